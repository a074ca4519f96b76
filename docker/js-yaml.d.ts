// js-yaml (a dependency of mocha) ships no types; compose.test.ts needs only load().
declare module 'js-yaml' {
  const yaml: { load(text: string): unknown };
  export default yaml;
}

// Starting several things that must all run, for tests and the demo: when one fails to
// start, the ones that did start are stopped before the failure is reported. Without this
// a failed `before` hook leaves servers and timers behind, and mocha never exits.
export interface Stoppable {
  stop(): Promise<void>;
}

/** Every start's result, or, after stopping those that started, the first failure. */
export async function startAll<T extends Stoppable>(starts: Array<Promise<T>>, alsoStop: Stoppable[] = []): Promise<T[]> {
  const outcomes = await Promise.allSettled(starts);
  const failure = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  const started = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
  if (failure === undefined) return started;
  // The started ones first (they may use what alsoStop holds: a replica its backend).
  await Promise.allSettled(started.map((thing) => thing.stop()));
  await Promise.allSettled(alsoStop.map((thing) => thing.stop()));
  throw failure.reason;
}

/** Starts things one after another; when one fails, those before it are stopped. */
export async function startInTurn<T extends Stoppable>(count: number, start: (index: number) => Promise<T>): Promise<T[]> {
  const started: T[] = [];
  try {
    for (let index = 0; index < count; index++) started.push(await start(index));
  } catch (error) {
    await Promise.allSettled(started.map((thing) => thing.stop()));
    throw error;
  }
  return started;
}

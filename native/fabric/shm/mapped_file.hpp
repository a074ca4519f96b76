// A shared-memory file mapped into this process, and the per-cluster directory that
// holds them. Files are created 0600 in a 0700 directory owned by this user: only the
// cluster's own processes (same uid) can map them.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <string>

namespace mu::fabric::shm {

class MappedFile {
 public:
  // Whether mapping installs every page at once (as a NIC pins registered memory: no
  // write to it ever takes a page fault) or lets each page fault in at its first touch
  // (mapping returns at once: populating a 64 MiB region takes milliseconds).
  enum class Populate { all_pages, on_first_touch };

  // Creates `path` exclusively (mode 0600), allocates its memory, zeroed, and maps every
  // page: a tmpfs too small for it fails here, with a clear error, not with SIGBUS at the
  // first write to a page it could not hold.
  static MappedFile create(const std::string& path, std::size_t size_bytes);
  // Opens and maps an existing file; its size must be at least `minimum_bytes`.
  static MappedFile open(const std::string& path, std::size_t minimum_bytes, Populate populate);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::byte* data() const { return data_; }
  std::size_t size_bytes() const { return size_bytes_; }
  // Identity of the underlying file (device, inode): tells incarnations apart.
  dev_t device() const { return device_; }
  ino_t inode() const { return inode_; }

 private:
  static MappedFile map(int fd, std::size_t size_bytes, const struct stat& status, const std::string& path,
                        Populate populate);

  std::byte* data_ = nullptr;
  std::size_t size_bytes_ = 0;
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

// Validates the cluster name and makes sure `<root>/mu-<name>` exists, is a directory
// owned by us and not accessible to others. Returns its path.
std::string prepare_cluster_directory(const std::string& root, const std::string& cluster_name);

}  // namespace mu::fabric::shm

#include "fabric/shm/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "fabric/fabric.hpp"

namespace mu::fabric::shm {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw FabricError("shm: " + what + " '" + path + "': " + std::strerror(errno));
}

// Closes a descriptor on every path out of a function.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() { if (fd_ >= 0) ::close(fd_); }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

MappedFile MappedFile::create(const std::string& path, std::size_t size_bytes) {
  FileDescriptor fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) fail("cannot create", path);
  try {
    // The umask may have narrowed the mode further; never let it be wider than 0600.
    if (::fchmod(fd.get(), 0600) != 0) fail("cannot chmod", path);
    if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0) fail("cannot size", path);
    if (const int error = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size_bytes)); error != 0) {
      errno = error;
      fail("cannot allocate " + std::to_string(size_bytes) + " bytes (is its file system large enough?) for", path);
    }
    struct stat status{};
    if (::fstat(fd.get(), &status) != 0) fail("cannot stat", path);
    return map(fd.get(), size_bytes, status, path, Populate::all_pages);
  } catch (const FabricError&) {
    ::unlink(path.c_str());  // created here and unusable: leave nothing behind
    throw;
  }
}

MappedFile MappedFile::open(const std::string& path, std::size_t minimum_bytes, Populate populate) {
  FileDescriptor fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) fail("cannot open", path);
  struct stat status{};
  if (::fstat(fd.get(), &status) != 0) fail("cannot stat", path);
  if (!S_ISREG(status.st_mode) || status.st_uid != ::geteuid() || (status.st_mode & 077) != 0) {
    errno = EPERM;
    fail("refusing a file that is not a private regular file of ours", path);
  }
  const auto size_bytes = static_cast<std::size_t>(status.st_size);
  if (size_bytes < minimum_bytes || size_bytes == 0) {
    errno = EINVAL;
    fail("file is smaller than expected", path);
  }
  return map(fd.get(), size_bytes, status, path, populate);
}

MappedFile MappedFile::map(int fd, std::size_t size_bytes, const struct stat& status, const std::string& path,
                           Populate populate) {
  // Populated where the caller can afford it, as registering memory with a NIC pins it:
  // otherwise the first write to each page faults in the writer, several microseconds
  // each on a VM. That was the p99 of replication over a fresh log (a page fault every ~25
  // small entries, in the leader and again in each follower's apply), and most of a new
  // leader's recovery time (the first reads into its scratch windows).
  const int flags = MAP_SHARED | (populate == Populate::all_pages ? MAP_POPULATE : 0);
  void* memory = ::mmap(nullptr, size_bytes, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (memory == MAP_FAILED) fail("cannot map", path);
  MappedFile file;
  file.data_ = static_cast<std::byte*>(memory);
  file.size_bytes_ = size_bytes;
  file.device_ = status.st_dev;
  file.inode_ = status.st_ino;
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_bytes_(std::exchange(other.size_bytes_, 0)),
      device_(other.device_),
      inode_(other.inode_) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_bytes_);
    data_ = std::exchange(other.data_, nullptr);
    size_bytes_ = std::exchange(other.size_bytes_, 0);
    device_ = other.device_;
    inode_ = other.inode_;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_bytes_);
}

std::string prepare_cluster_directory(const std::string& root, const std::string& cluster_name) {
  const bool name_ok = !cluster_name.empty() && cluster_name.size() <= 64 &&
      cluster_name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
          std::string::npos;
  if (!name_ok) {
    throw FabricError("shm: cluster name '" + cluster_name +
                      "' must be 1-64 characters of letters, digits, '_' or '-'");
  }
  const std::string path = root + "/mu-" + cluster_name;
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) fail("cannot create cluster directory", path);
  struct stat status{};
  if (::lstat(path.c_str(), &status) != 0) fail("cannot stat cluster directory", path);
  if (!S_ISDIR(status.st_mode) || status.st_uid != ::geteuid()) {
    errno = EPERM;
    fail("cluster directory is not a directory owned by this user", path);
  }
  if ((status.st_mode & 077) != 0 && ::chmod(path.c_str(), 0700) != 0) {
    fail("cannot make cluster directory private", path);
  }
  return path;
}

}  // namespace mu::fabric::shm

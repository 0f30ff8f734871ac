// Fuzzes the daemon's TOML config loader (and ParseSize on the same bytes).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  thinsnap::Result<uint64_t> bytes =
      thinsnap::ParseSize(std::string_view(reinterpret_cast<const char*>(data), size));
  // ParseSize's contract: a positive multiple of the 512-byte sector, or InvalidArgument.
  if (bytes.ok() ? (*bytes == 0 || *bytes % 512 != 0)
                 : bytes.status().code() != thinsnap::Code::kInvalidArgument) {
    __builtin_trap();
  }

  // LoadConfig reads a path; a memfd gives one without touching the disk.
  const int fd = memfd_create("thinsnap-config-fuzz", MFD_CLOEXEC);
  if (fd < 0) __builtin_trap();
  if (size > 0 && write(fd, data, size) != static_cast<ssize_t>(size)) __builtin_trap();
  thinsnap::Result<thinsnap::Config> config =
      thinsnap::LoadConfig("/proc/self/fd/" + std::to_string(fd));
  close(fd);
  if (!config.ok()) {
    if (config.status().code() != thinsnap::Code::kInvalidArgument) __builtin_trap();
    return 0;
  }
  (void)thinsnap::ValidateConfig(*config);
  return 0;
}

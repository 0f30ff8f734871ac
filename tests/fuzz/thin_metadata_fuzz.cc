// Fuzzes the in-process thin-pool metadata reader (src/pool/thin_metadata.h)
// with metadata made of the input, 4 KiB blocks of it. Each block is given
// its own block number and a valid checksum (block 0 a superblock's, the rest
// a btree node's) so that the fuzzer explores the trees behind the checksums
// rather than the checksums; the first byte picks the thin id.
#include <ext2fs/ext2fs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "pool/thin_metadata.h"

namespace {

constexpr size_t kBlock = 4096, kMaxBlocks = 16;
constexpr uint32_t kSuperblockCsumXor = 160774, kBtreeCsumXor = 121107;

void Seal(uint8_t* block, uint64_t nr) {
  std::memcpy(block + 8, &nr, 8);  // little-endian on the machines we build for
  const uint32_t csum =
      ext2fs_crc32c_le(~0u, block + 4, kBlock - 4) ^ (nr == 0 ? kSuperblockCsumXor : kBtreeCsumXor);
  std::memcpy(block, &csum, 4);
}

bool Allowed(const thinsnap::Status& st) {
  return st.ok() || st.code() == thinsnap::Code::kNotFound ||
         st.code() == thinsnap::Code::kInternal;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 1 + kMaxBlocks * kBlock) return -1;
  const thinsnap::ThinId id = data[0] % 4;
  std::vector<uint8_t> meta((size - 1 + kBlock - 1) / kBlock * kBlock + (size == 1 ? kBlock : 0));
  std::memcpy(meta.data(), data + 1, size - 1);
  for (size_t nr = 0; nr * kBlock < meta.size(); ++nr) Seal(meta.data() + nr * kBlock, nr);

  const int fd = memfd_create("thin-metadata", MFD_CLOEXEC);
  if (fd < 0 || write(fd, meta.data(), meta.size()) != static_cast<ssize_t>(meta.size()))
    __builtin_trap();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  using thinsnap::MetadataSource;
  // The reader's contract on any metadata: an answer, NotFound, or Internal.
  auto mapped = thinsnap::ReadThinMappings(path, MetadataSource::kOfflineFile, id, 65536);
  if (!Allowed(mapped.status())) __builtin_trap();
  auto own = thinsnap::ReadOwnRanges(path, MetadataSource::kOfflineFile, {id, id + 1}, 65536);
  if (!Allowed(own.status())) __builtin_trap();
  if (own.ok()) {
    for (const auto& r : *own)
      if (!Allowed(r.status())) __builtin_trap();
  }
  close(fd);
  return 0;
}

#include "pool/thin_metadata.h"

#include <endian.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unordered_set>

#include "base/unique_fd.h"

namespace thinsnap {
namespace {

constexpr size_t kMetaBlock = 4096;
constexpr uint64_t kSuperblockMagic = 27022010;
// thin_disk_superblock (packed): csum at 0, blocknr at 8, magic at 32,
// held_root at 56, data_mapping_root at 320, device_details_root at 328.
constexpr size_t kBlocknrOffset = 8, kMagicOffset = 32, kHeldRootOffset = 56,
                 kMappingRootOffset = 320, kDetailsRootOffset = 328;
// btree node_header: csum, flags, blocknr, nr_entries, max_entries,
// value_size, padding; then max_entries keys, then max_entries values.
constexpr size_t kNodeHeaderBytes = 32;
constexpr uint32_t kInternalNode = 1, kLeafNode = 2;
// Values: a mapping (or a child's block) is 8 bytes; disk_device_details is
// mapped_blocks, transaction_id (8 each), creation_time, snapshotted_time.
constexpr uint32_t kBlockValueBytes = 8, kDetailsValueBytes = 24;
constexpr size_t kCreationTimeOffset = 16;
// A mapping's value: data block << 24 | time.
constexpr uint64_t kTimeMask = (uint64_t{1} << 24) - 1;
// Each block's checksum is crc32c of the rest of it, xored with its kind's
// constant (dm_bm_checksum; SUPERBLOCK_CSUM_XOR, BTREE_CSUM_XOR).
constexpr uint32_t kSuperblockCsumXor = 160774, kBtreeCsumXor = 121107;
// dm-btree keeps a tree balanced; a deeper one is a cycle or garbage.
constexpr int kMaxDepth = 16;
// kLive: walks that may race a commit before the reader gives up. A walk is
// a few ms; the pool commits on every flush and message, at most a few dozen
// times a second even under churn.
constexpr int kLiveAttempts = 8;

uint32_t Le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return le32toh(v);
}
uint64_t Le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return le64toh(v);
}

bool ChecksumMatches(const uint8_t* block, uint32_t xor_with) {
  const uint32_t sum = ext2fs_crc32c_le(~uint32_t{0}, block + 4, kMetaBlock - 4) ^ xor_with;
  return Le32(block) == sum;
}

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

// A btree node, copied out of the reader's buffer.
struct Node {
  bool leaf = false;
  std::vector<uint64_t> keys;
  std::vector<uint8_t> values;  // value_size bytes each
  uint32_t value_size = 0;
  const uint8_t* Value(size_t i) const { return values.data() + i * value_size; }
};

// The superblock a walk starts from: its bytes, to tell whether a live pool
// committed during the walk.
struct Superblock {
  std::vector<uint8_t> bytes;
  uint64_t mapping_root() const { return Le64(bytes.data() + kMappingRootOffset); }
  uint64_t details_root() const { return Le64(bytes.data() + kDetailsRootOffset); }
};

class MetadataReader {
 public:
  static Result<MetadataReader> Open(const std::string& path, MetadataSource source) {
    const int flags =
        O_RDONLY | O_CLOEXEC | (source == MetadataSource::kOfflineFile ? 0 : O_DIRECT);
    UniqueFd fd(open(path.c_str(), flags));
    if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
    // A file's or a block device's size alike.
    const off_t end = lseek(fd.get(), 0, SEEK_END);
    if (end < 0) return Status::FromErrno(errno, "size of " + path);
    void* buf = nullptr;
    // O_DIRECT wants an aligned buffer; one block-sized buffer serves every read.
    if (posix_memalign(&buf, kMetaBlock, kMetaBlock) != 0) return Status::Internal("out of memory");
    return MetadataReader(path, source, std::move(fd), static_cast<uint8_t*>(buf),
                          static_cast<uint64_t>(end) / kMetaBlock);
  }

  // The superblock to walk from: block 0, or the copy a held snapshot names.
  Result<Superblock> ReadSuperblock() {
    auto live = ReadSuperblockAt(0);
    if (!live.ok() || source_ != MetadataSource::kHeldSnapshot) return live;
    const uint64_t held = Le64(live->bytes.data() + kHeldRootOffset);
    if (held == 0) return Status::FailedPrecondition(path_ + ": no metadata snapshot is held");
    return ReadSuperblockAt(held);
  }

  // The value stored under `key` in the btree rooted at `root`.
  Result<std::vector<uint8_t>> Lookup(uint64_t root, uint64_t key, uint32_t value_size,
                                      int depth = 0) {
    if (depth > kMaxDepth) return TooDeep();
    auto node = ReadNode(root, value_size);
    if (!node.ok()) return node.status();
    // The last entry whose key is <= `key`: in an internal node, the child
    // that covers it; in a leaf, the key itself or nothing.
    size_t i = node->keys.size();
    while (i > 0 && node->keys[i - 1] > key) --i;
    if (i == 0 || (node->leaf && node->keys[i - 1] != key))
      return Status::NotFound("key " + std::to_string(key));
    if (node->leaf) return std::vector<uint8_t>(node->Value(i - 1), node->Value(i));
    return Lookup(Le64(node->Value(i - 1)), key, value_size, depth + 1);
  }

  // Appends the virtual blocks mapped in the device tree `root` whose time
  // is at least `min_time`, in order, as byte ranges.
  Status CollectMappings(uint64_t root, uint64_t min_time, uint64_t block_bytes,
                         std::vector<ByteRange>& out) {
    std::unordered_set<uint64_t> visited;
    return Collect(root, min_time, block_bytes, out, visited, 0);
  }

 private:
  MetadataReader(std::string path, MetadataSource source, UniqueFd fd, uint8_t* buf,
                 uint64_t nr_blocks)
      : path_(std::move(path)),
        source_(source),
        fd_(std::move(fd)),
        buf_(buf),
        nr_blocks_(nr_blocks) {}

  // CollectMappings below `root`. A btree reaches each node once: a node
  // reached again is a cycle or shared garbage, whose walk could otherwise
  // take as many reads as there are paths through it.
  Status Collect(uint64_t root, uint64_t min_time, uint64_t block_bytes,
                 std::vector<ByteRange>& out, std::unordered_set<uint64_t>& visited, int depth) {
    if (depth > kMaxDepth) return TooDeep();
    if (!visited.insert(root).second) {
      return Status::Internal(path_ + ": btree node " + std::to_string(root) + " reached twice");
    }
    auto node = ReadNode(root, kBlockValueBytes);
    if (!node.ok()) return node.status();
    for (size_t i = 0; i < node->keys.size(); ++i) {
      const uint64_t value = Le64(node->Value(i));
      if (!node->leaf) {
        THINSNAP_RETURN_IF_ERROR(Collect(value, min_time, block_bytes, out, visited, depth + 1));
        continue;
      }
      if ((value & kTimeMask) < min_time) continue;
      const uint64_t offset = node->keys[i] * block_bytes;
      if (!out.empty() && out.back().offset + out.back().length > offset) {
        return Status::Internal(path_ + ": mapping keys out of order at block " +
                                std::to_string(node->keys[i]));
      }
      if (!out.empty() && out.back().offset + out.back().length == offset) {
        out.back().length += block_bytes;
      } else {
        out.push_back({offset, block_bytes});
      }
    }
    return Status::Ok();
  }

  // Reads block `nr` into the reader's buffer and returns it.
  // A block number past the end is the metadata's fault: Internal.
  Result<const uint8_t*> Read(uint64_t nr) {
    if (nr >= nr_blocks_)
      return Status::Internal(path_ + ": block " + std::to_string(nr) + " is past its end");
    const ssize_t n = pread(fd_.get(), buf_.get(), kMetaBlock, static_cast<off_t>(nr * kMetaBlock));
    if (n < 0) return Status::FromErrno(errno, "read block " + std::to_string(nr) + " of " + path_);
    if (static_cast<size_t>(n) != kMetaBlock) {
      return Status::Internal(path_ + ": block " + std::to_string(nr) + " is past its end");
    }
    return buf_.get();
  }

  Result<Superblock> ReadSuperblockAt(uint64_t nr) {
    auto block = Read(nr);
    if (!block.ok()) return block.status();
    const uint8_t* b = *block;
    const std::string where = path_ + ": block " + std::to_string(nr);
    if (Le64(b + kMagicOffset) != kSuperblockMagic)
      return Status::Internal(where + " holds no thin-pool superblock");
    if (Le64(b + kBlocknrOffset) != nr) return Status::Internal(where + " names another block");
    if (!ChecksumMatches(b, kSuperblockCsumXor))
      return Status::Internal(where + ": superblock checksum mismatch");
    return Superblock{std::vector<uint8_t>(b, b + kMetaBlock)};
  }

  // Reads the btree node in block `nr`, whose leaves hold values of `value_size` bytes.
  Result<Node> ReadNode(uint64_t nr, uint32_t leaf_value_size) {
    auto block = Read(nr);
    if (!block.ok()) return block.status();
    const uint8_t* b = *block;
    const uint32_t flags = Le32(b + 4), nr_entries = Le32(b + 16), max_entries = Le32(b + 20),
                   value_size = Le32(b + 24);
    const std::string where = path_ + ": btree node " + std::to_string(nr);
    if (Le64(b + 8) != nr) return Status::Internal(where + " names another block");
    if (!ChecksumMatches(b, kBtreeCsumXor)) return Status::Internal(where + ": checksum mismatch");
    if (flags != kInternalNode && flags != kLeafNode)
      return Status::Internal(where + " has flags " + std::to_string(flags));
    const uint32_t want = flags == kLeafNode ? leaf_value_size : kBlockValueBytes;
    if (value_size != want)
      return Status::Internal(where + " has values of " + std::to_string(value_size) + " bytes");
    if (nr_entries > max_entries ||
        kNodeHeaderBytes + uint64_t{max_entries} * (8 + value_size) > kMetaBlock) {
      return Status::Internal(where + " has " + std::to_string(nr_entries) + " of " +
                              std::to_string(max_entries) + " entries");
    }
    Node node;
    node.leaf = flags == kLeafNode;
    node.value_size = value_size;
    const uint8_t* keys = b + kNodeHeaderBytes;
    const uint8_t* values = keys + size_t{max_entries} * 8;
    for (uint32_t i = 0; i < nr_entries; ++i) node.keys.push_back(Le64(keys + size_t{i} * 8));
    node.values.assign(values, values + size_t{nr_entries} * value_size);
    return node;
  }

  Status TooDeep() const {
    return Status::Internal(path_ + ": btree deeper than " + std::to_string(kMaxDepth));
  }

  std::string path_;
  MetadataSource source_;
  UniqueFd fd_;
  std::unique_ptr<uint8_t, FreeDeleter> buf_;
  uint64_t nr_blocks_;
};

// The mappings of device `id` stamped at or after `min_time`, or (`own`)
// at or after its creation time, walked from `super`.
Result<std::vector<ByteRange>> Mappings(MetadataReader& reader, const Superblock& super, ThinId id,
                                        bool own, uint64_t block_bytes) {
  uint64_t min_time = 0;
  if (own) {
    auto details = reader.Lookup(super.details_root(), id, kDetailsValueBytes);
    if (!details.ok()) return details.status();
    min_time = Le32(details->data() + kCreationTimeOffset);
  }
  auto device_root = reader.Lookup(super.mapping_root(), id, kBlockValueBytes);
  if (!device_root.ok()) return device_root.status();
  std::vector<ByteRange> out;
  THINSNAP_RETURN_IF_ERROR(
      reader.CollectMappings(Le64(device_root->data()), min_time, block_bytes, out));
  return out;
}

// Mappings() from one consistent superblock: for kLive, walked again while
// the pool commits under the walk. A device missing from the metadata is
// NotFound, named after `path`.
Result<std::vector<ByteRange>> ConsistentMappings(MetadataReader& reader, MetadataSource source,
                                                  const std::string& path, ThinId id, bool own,
                                                  uint64_t block_bytes) {
  const int attempts = source == MetadataSource::kLive ? kLiveAttempts : 1;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    auto super = reader.ReadSuperblock();
    if (!super.ok()) return super.status();
    auto out = Mappings(reader, *super, id, own, block_bytes);
    if (source == MetadataSource::kLive) {
      // A failed walk may be a torn one too: only the superblock can tell.
      auto after = reader.ReadSuperblock();
      if (!after.ok() || after->bytes != super->bytes) continue;
    }
    if (out.status().code() == Code::kNotFound)
      return Status::NotFound("thin id " + std::to_string(id) + " is not in " + path);
    return out;
  }
  return Status::Unavailable(path + ": the pool committed during each of " +
                             std::to_string(attempts) + " reads of thin id " + std::to_string(id));
}

}  // namespace

Result<std::vector<ByteRange>> ReadThinMappings(const std::string& metadata_path,
                                                MetadataSource source, ThinId id,
                                                uint64_t block_bytes) {
  if (block_bytes == 0) return Status::InvalidArgument("block size must be positive");
  auto reader = MetadataReader::Open(metadata_path, source);
  if (!reader.ok()) return reader.status();
  return ConsistentMappings(*reader, source, metadata_path, id, /*own=*/false, block_bytes);
}

Result<std::vector<Result<std::vector<ByteRange>>>> ReadOwnRanges(const std::string& metadata_path,
                                                                  MetadataSource source,
                                                                  const std::vector<ThinId>& ids,
                                                                  uint64_t block_bytes) {
  if (block_bytes == 0) return Status::InvalidArgument("block size must be positive");
  auto reader = MetadataReader::Open(metadata_path, source);
  if (!reader.ok()) return reader.status();
  std::vector<Result<std::vector<ByteRange>>> out;
  for (ThinId id : ids) {
    auto own = ConsistentMappings(*reader, source, metadata_path, id, /*own=*/true, block_bytes);
    // Only a missing device is that device's own answer; anything else
    // (garbage, a pool that never stops committing) fails the whole read.
    if (!own.ok() && own.status().code() != Code::kNotFound) return own.status();
    out.push_back(std::move(own));
  }
  return out;
}

std::vector<ByteRange> IntersectRanges(const std::vector<ByteRange>& ranges,
                                       const std::vector<ByteRange>& within) {
  std::vector<ByteRange> out;
  size_t j = 0;
  for (const ByteRange& r : ranges) {
    const uint64_t end = r.offset + r.length;
    while (j < within.size() && within[j].offset + within[j].length <= r.offset) ++j;
    for (size_t k = j; k < within.size() && within[k].offset < end; ++k) {
      const uint64_t begin = std::max(r.offset, within[k].offset);
      const uint64_t stop = std::min(end, within[k].offset + within[k].length);
      if (stop > begin) out.push_back({begin, stop - begin});
    }
  }
  return out;
}

}  // namespace thinsnap

#include "pool/thin_metadata.h"

#include <endian.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "base/unique_fd.h"

namespace thinsnap {
namespace {

constexpr size_t kMetaBlock = 4096;
constexpr uint64_t kSuperblockMagic = 27022010;
// thin_disk_superblock (packed): magic at 32, held_root at 56,
// data_mapping_root at 320.
constexpr size_t kMagicOffset = 32, kHeldRootOffset = 56, kMappingRootOffset = 320;
// btree node_header: csum, flags, blocknr, nr_entries, max_entries,
// value_size, padding; then max_entries keys, then max_entries values.
constexpr size_t kNodeHeaderBytes = 32;
constexpr uint32_t kInternalNode = 1, kLeafNode = 2;
// dm-btree keeps a tree balanced; a deeper one is a cycle or garbage.
constexpr int kMaxDepth = 16;

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

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

class MetadataReader {
 public:
  static Result<MetadataReader> Open(const std::string& path, MetadataSource source) {
    const int flags =
        O_RDONLY | O_CLOEXEC | (source == MetadataSource::kHeldSnapshot ? O_DIRECT : 0);
    UniqueFd fd(open(path.c_str(), flags));
    if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
    void* buf = nullptr;
    // O_DIRECT wants an aligned buffer; one block-sized buffer serves every read.
    if (posix_memalign(&buf, kMetaBlock, kMetaBlock) != 0) return Status::Internal("out of memory");
    return MetadataReader(path, std::move(fd), static_cast<uint8_t*>(buf));
  }

  // Reads block `nr` into the reader's buffer and returns it.
  Result<const uint8_t*> Read(uint64_t nr) {
    const ssize_t n = pread(fd_.get(), buf_.get(), kMetaBlock, static_cast<off_t>(nr * kMetaBlock));
    if (n < 0) return Status::FromErrno(errno, "read block " + std::to_string(nr) + " of " + path_);
    if (static_cast<size_t>(n) != kMetaBlock) {
      return Status::Internal(path_ + ": block " + std::to_string(nr) + " is past its end");
    }
    return buf_.get();
  }

  // Reads the btree node in block `nr`; its entries are copied out, since
  // the buffer is reused by the next read.
  struct Node {
    bool leaf = false;
    std::vector<uint64_t> keys, values;
  };
  Result<Node> ReadNode(uint64_t nr) {
    auto block = Read(nr);
    if (!block.ok()) return block.status();
    const uint8_t* b = *block;
    const uint32_t flags = Le32(b + 4), nr_entries = Le32(b + 16), max_entries = Le32(b + 20),
                   value_size = Le32(b + 24);
    const std::string where = path_ + ": btree node " + std::to_string(nr);
    if (Le64(b + 8) != nr) return Status::Internal(where + " names another block");
    if (flags != kInternalNode && flags != kLeafNode)
      return Status::Internal(where + " has flags " + std::to_string(flags));
    if (value_size != sizeof(uint64_t))
      return Status::Internal(where + " has values of " + std::to_string(value_size) + " bytes");
    if (nr_entries > max_entries ||
        kNodeHeaderBytes + uint64_t{max_entries} * (8 + value_size) > kMetaBlock) {
      return Status::Internal(where + " has " + std::to_string(nr_entries) + " of " +
                              std::to_string(max_entries) + " entries");
    }
    Node node;
    node.leaf = flags == kLeafNode;
    const uint8_t* keys = b + kNodeHeaderBytes;
    const uint8_t* values = keys + size_t{max_entries} * 8;
    for (uint32_t i = 0; i < nr_entries; ++i) {
      node.keys.push_back(Le64(keys + size_t{i} * 8));
      node.values.push_back(Le64(values + size_t{i} * 8));
    }
    return node;
  }

  // The value stored under `key` in the btree rooted at `root`.
  Result<uint64_t> Lookup(uint64_t root, uint64_t key, int depth = 0) {
    if (depth > kMaxDepth)
      return Status::Internal(path_ + ": btree deeper than " + std::to_string(kMaxDepth));
    auto node = ReadNode(root);
    if (!node.ok()) return node.status();
    // The last entry whose key is <= `key`: in an internal node, the child
    // that covers it; in a leaf, the key itself or nothing.
    size_t i = node->keys.size();
    while (i > 0 && node->keys[i - 1] > key) --i;
    if (i == 0 || (node->leaf && node->keys[i - 1] != key))
      return Status::NotFound("key " + std::to_string(key));
    if (node->leaf) return node->values[i - 1];
    return Lookup(node->values[i - 1], key, depth + 1);
  }

  // Appends the keys of every leaf under `root`, in order, as byte ranges.
  Status CollectKeys(uint64_t root, uint64_t block_bytes, std::vector<ByteRange>& out,
                     int depth = 0) {
    if (depth > kMaxDepth)
      return Status::Internal(path_ + ": btree deeper than " + std::to_string(kMaxDepth));
    auto node = ReadNode(root);
    if (!node.ok()) return node.status();
    if (!node->leaf) {
      for (uint64_t child : node->values)
        THINSNAP_RETURN_IF_ERROR(CollectKeys(child, block_bytes, out, depth + 1));
      return Status::Ok();
    }
    for (uint64_t key : node->keys) {
      const uint64_t offset = key * block_bytes;
      if (!out.empty() && out.back().offset + out.back().length == offset) {
        out.back().length += block_bytes;
      } else if (!out.empty() && out.back().offset + out.back().length > offset) {
        return Status::Internal(path_ + ": mapping keys out of order at block " +
                                std::to_string(key));
      } else {
        out.push_back({offset, block_bytes});
      }
    }
    return Status::Ok();
  }

 private:
  MetadataReader(std::string path, UniqueFd fd, uint8_t* buf)
      : path_(std::move(path)), fd_(std::move(fd)), buf_(buf) {}
  std::string path_;
  UniqueFd fd_;
  std::unique_ptr<uint8_t, FreeDeleter> buf_;
};

}  // namespace

Result<std::vector<ByteRange>> ReadThinMappings(const std::string& metadata_path,
                                                MetadataSource source, ThinId id,
                                                uint64_t block_bytes) {
  if (block_bytes == 0) return Status::InvalidArgument("block size must be positive");
  auto reader = MetadataReader::Open(metadata_path, source);
  if (!reader.ok()) return reader.status();
  auto super = reader->Read(0);
  if (!super.ok()) return super.status();
  if (Le64(*super + kMagicOffset) != kSuperblockMagic)
    return Status::Internal(metadata_path + " holds no thin-pool metadata");
  uint64_t sb = 0;
  if (source == MetadataSource::kHeldSnapshot) {
    // The held root is a copy of the superblock as it was at the reserve.
    sb = Le64(*super + kHeldRootOffset);
    if (sb == 0)
      return Status::FailedPrecondition(metadata_path + ": no metadata snapshot is held");
    super = reader->Read(sb);
    if (!super.ok()) return super.status();
    if (Le64(*super + kMagicOffset) != kSuperblockMagic)
      return Status::Internal(metadata_path + ": the held root is not a superblock");
  }
  const uint64_t mapping_root = Le64(*super + kMappingRootOffset);
  auto device_root = reader->Lookup(mapping_root, id);
  if (!device_root.ok()) {
    if (device_root.status().code() == Code::kNotFound)
      return Status::NotFound("thin id " + std::to_string(id) + " is not in " + metadata_path);
    return device_root.status();
  }
  std::vector<ByteRange> out;
  THINSNAP_RETURN_IF_ERROR(reader->CollectKeys(*device_root, block_bytes, out));
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

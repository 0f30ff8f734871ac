#include "pool/thin_metadata.h"

#include <ext2fs/ext2fs.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/subprocess.h"

namespace thinsnap {
namespace {

constexpr uint64_t kBlock = 64 << 10;
constexpr size_t kMetaBlock = 4096;

// Device 1 maps blocks 0-9; device 2, its snapshot, inherited 0-3, rewrote
// 4, and wrote 20-22; device 3 maps 600 blocks, every other one from 1000,
// enough for a tree of several leaves under an internal node; device 4 maps
// nothing.
std::string MetadataXml() {
  std::string xml =
      R"(<superblock uuid="" time="2" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="100000">
  <device dev_id="1" mapped_blocks="10" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="10" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="13" transaction="0" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>
    <single_mapping origin_block="4" data_block="100" time="1"/>
    <range_mapping origin_begin="5" data_begin="5" length="5" time="0"/>
    <range_mapping origin_begin="20" data_begin="200" length="3" time="2"/>
  </device>
  <device dev_id="3" mapped_blocks="600" transaction="0" creation_time="2" snap_time="2">
)";
  for (int i = 0; i < 600; ++i) {
    xml += "    <single_mapping origin_block=\"" + std::to_string(1000 + 2 * i) +
           "\" data_block=\"" + std::to_string(1000 + i) + "\" time=\"2\"/>\n";
  }
  xml += R"(  </device>
  <device dev_id="4" mapped_blocks="0" transaction="0" creation_time="2" snap_time="2">
  </device>
</superblock>
)";
  return xml;
}

// Real metadata, written by thin_restore (thin-provisioning-tools, a build
// dependency) from MetadataXml, so the reader is held to the real format.
class ThinMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("thin_metadata_test." + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    const std::string xml = (dir_ / "meta.xml").string();
    meta_ = (dir_ / "meta.bin").string();
    std::ofstream(xml) << MetadataXml();
    { std::ofstream(meta_).flush(); }
    std::filesystem::resize_file(meta_, 8 << 20);
    Status restored = RunChecked({"thin_restore", "-i", xml, "-o", meta_});
    ASSERT_TRUE(restored.ok()) << restored.ToString();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Makes the metadata look as a live pool's does while it holds a metadata
  // snapshot (dm-thin's __reserve_metadata_snap): a copy of the superblock,
  // here in the file's last block, stamped with its own block number and
  // checksum; the superblock's held_root names it, and its mapping root now
  // points elsewhere (to itself, not a btree node).
  void HoldSnapshot() {
    std::vector<uint8_t> super = ReadBlock(0);
    const uint64_t held = (8 << 20) / kMetaBlock - 1;
    PutLe64(super, 8, held);
    WriteSuperblock(held, super);
    super = ReadBlock(0);
    PutLe64(super, 56, held);
    PutLe64(super, 320, 0);
    WriteSuperblock(0, super);
  }

  std::vector<uint8_t> ReadBlock(uint64_t nr) {
    std::ifstream f(meta_, std::ios::binary);
    std::vector<uint8_t> block(kMetaBlock);
    f.seekg(static_cast<std::streamoff>(nr * kMetaBlock));
    f.read(reinterpret_cast<char*>(block.data()), kMetaBlock);
    return block;
  }
  static void PutLe64(std::vector<uint8_t>& block, size_t offset, uint64_t value) {
    const uint64_t le = htole64(value);
    std::memcpy(block.data() + offset, &le, 8);
  }
  // Writes a superblock with its checksum: crc32c of the rest, xored with
  // dm-thin's SUPERBLOCK_CSUM_XOR.
  void WriteSuperblock(uint64_t nr, std::vector<uint8_t> block) {
    const uint32_t csum = htole32(ext2fs_crc32c_le(~0u, block.data() + 4, kMetaBlock - 4) ^ 160774);
    std::memcpy(block.data(), &csum, 4);
    std::fstream f(meta_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(nr * kMetaBlock));
    f.write(reinterpret_cast<const char*>(block.data()), kMetaBlock);
  }

  std::filesystem::path dir_;
  std::string meta_;
};

TEST_F(ThinMetadataTest, MappingsOfEachDevice) {
  auto one = ReadThinMappings(meta_, MetadataSource::kOfflineFile, 1, kBlock);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(*one, (std::vector<ByteRange>{{0, 10 * kBlock}}));
  // Inherited and own mappings alike; touching ones merged.
  auto two = ReadThinMappings(meta_, MetadataSource::kOfflineFile, 2, kBlock);
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(*two, (std::vector<ByteRange>{{0, 10 * kBlock}, {20 * kBlock, 3 * kBlock}}));
  auto none = ReadThinMappings(meta_, MetadataSource::kOfflineFile, 4, kBlock);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

TEST_F(ThinMetadataTest, ATreeOfSeveralLeavesIsReadInOrder) {
  auto three = ReadThinMappings(meta_, MetadataSource::kOfflineFile, 3, kBlock);
  ASSERT_TRUE(three.ok()) << three.status().ToString();
  ASSERT_EQ(three->size(), 600u);
  for (size_t i = 0; i < three->size(); ++i)
    ASSERT_EQ((*three)[i], (ByteRange{(1000 + 2 * i) * kBlock, kBlock})) << i;
}

TEST_F(ThinMetadataTest, AnUnknownDeviceIsNotFound) {
  EXPECT_EQ(ReadThinMappings(meta_, MetadataSource::kOfflineFile, 5, kBlock).status().code(),
            Code::kNotFound);
}

TEST_F(ThinMetadataTest, AHeldSnapshotIsReadThroughItsRoot) {
  EXPECT_EQ(ReadThinMappings(meta_, MetadataSource::kHeldSnapshot, 2, kBlock).status().code(),
            Code::kFailedPrecondition);
  HoldSnapshot();
  auto two = ReadThinMappings(meta_, MetadataSource::kHeldSnapshot, 2, kBlock);
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(*two, (std::vector<ByteRange>{{0, 10 * kBlock}, {20 * kBlock, 3 * kBlock}}));
}

TEST_F(ThinMetadataTest, OwnRangesAreWhatEachDeviceWroteAfterItsCreation) {
  auto own = ReadOwnRanges(meta_, MetadataSource::kOfflineFile, {2, 4, 1, 9}, kBlock);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  ASSERT_EQ(own->size(), 4u);
  // Device 2, created at time 1: the block it rewrote and the three it wrote
  // later, not the ones it inherited at time 0.
  ASSERT_TRUE((*own)[0].ok()) << (*own)[0].status().ToString();
  EXPECT_EQ(*(*own)[0], (std::vector<ByteRange>{{4 * kBlock, kBlock}, {20 * kBlock, 3 * kBlock}}));
  ASSERT_TRUE((*own)[1].ok());
  EXPECT_TRUE((*own)[1]->empty());
  // Device 1 was made with create_thin (time 0): all it maps is its own.
  ASSERT_TRUE((*own)[2].ok());
  EXPECT_EQ(*(*own)[2], (std::vector<ByteRange>{{0, 10 * kBlock}}));
  EXPECT_EQ((*own)[3].status().code(), Code::kNotFound);
}

TEST_F(ThinMetadataTest, LiveMetadataIsReadAsOfItsLastCommit) {
  auto two = ReadThinMappings(meta_, MetadataSource::kLive, 2, kBlock);
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(*two, (std::vector<ByteRange>{{0, 10 * kBlock}, {20 * kBlock, 3 * kBlock}}));
  auto own = ReadOwnRanges(meta_, MetadataSource::kLive, {3}, kBlock);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  ASSERT_TRUE((*own)[0].ok());
  EXPECT_EQ((*own)[0]->size(), 600u);
}

// A pool that commits during the walk (here: its superblock rewritten again
// and again, each time with a new time and a valid checksum) never yields a
// wrong answer: each read is the right one or Unavailable.
TEST_F(ThinMetadataTest, ALiveReadRacingCommitsIsRightOrUnavailable) {
  const std::vector<uint8_t> super = ReadBlock(0);
  std::atomic<bool> stop{false};
  std::thread committer([&] {
    std::vector<uint8_t> next = super;
    for (uint32_t time = 100; !stop.load(); ++time) {
      const uint32_t le = htole32(time);
      std::memcpy(next.data() + 44, &le, 4);  // the pool's time
      WriteSuperblock(0, next);
    }
  });
  int right = 0, unavailable = 0;
  for (int i = 0; i < 200; ++i) {
    auto three = ReadThinMappings(meta_, MetadataSource::kLive, 3, kBlock);
    if (three.ok()) {
      ASSERT_EQ(three->size(), 600u);
      EXPECT_EQ(three->back(), (ByteRange{(1000 + 2 * 599) * kBlock, kBlock}));
      ++right;
    } else {
      ASSERT_EQ(three.status().code(), Code::kUnavailable) << three.status().ToString();
      ++unavailable;
    }
  }
  stop = true;
  committer.join();
  EXPECT_EQ(right + unavailable, 200);
  std::printf("live reads racing commits: %d right, %d unavailable\n", right, unavailable);
}

TEST_F(ThinMetadataTest, ATornNodeIsRefusedByItsChecksum) {
  // The top-level mapping tree's root: one byte of it flipped.
  const std::vector<uint8_t> super = ReadBlock(0);
  uint64_t root;
  std::memcpy(&root, super.data() + 320, 8);
  root = le64toh(root);
  std::vector<uint8_t> node = ReadBlock(root);
  node[100] ^= 1;
  {
    std::fstream f(meta_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(root * kMetaBlock));
    f.write(reinterpret_cast<const char*>(node.data()), kMetaBlock);
  }
  auto one = ReadThinMappings(meta_, MetadataSource::kOfflineFile, 1, kBlock);
  EXPECT_EQ(one.status().code(), Code::kInternal);
  EXPECT_NE(one.status().ToString().find("checksum"), std::string::npos) << one.status().ToString();
}

// A btree whose internal node names one child twice (a cycle, or garbage that
// passes its checksums) is refused, not walked once per path through it.
TEST_F(ThinMetadataTest, ANodeReachedTwiceIsRefused) {
  auto le32 = [](const std::vector<uint8_t>& b, size_t at) {
    uint32_t v;
    std::memcpy(&v, b.data() + at, 4);
    return le32toh(v);
  };
  auto le64 = [](const std::vector<uint8_t>& b, size_t at) {
    uint64_t v;
    std::memcpy(&v, b.data() + at, 8);
    return le64toh(v);
  };
  // node_header is 32 bytes; max_entries at 20; keys, then values, follow.
  auto value_at = [&](const std::vector<uint8_t>& node, uint32_t i) {
    return 32 + size_t{le32(node, 20)} * 8 + i * 8;
  };
  // The top-level tree (one leaf): thin id -> that device's tree.
  const std::vector<uint8_t> top = ReadBlock(le64(ReadBlock(0), 320));
  uint32_t i = 0;
  while (le64(top, 32 + i * 8) != 3) ++i;
  const uint64_t root = le64(top, value_at(top, i));
  std::vector<uint8_t> node = ReadBlock(root);
  ASSERT_EQ(le32(node, 4), 1u) << "device 3's 600 mappings need an internal root";
  ASSERT_GE(le32(node, 16), 2u);
  std::memcpy(node.data() + value_at(node, 1), node.data() + value_at(node, 0), 8);
  const uint32_t csum = htole32(ext2fs_crc32c_le(~0u, node.data() + 4, kMetaBlock - 4) ^ 121107);
  std::memcpy(node.data(), &csum, 4);
  {
    std::fstream f(meta_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(root * kMetaBlock));
    f.write(reinterpret_cast<const char*>(node.data()), kMetaBlock);
  }
  auto three = ReadThinMappings(meta_, MetadataSource::kOfflineFile, 3, kBlock);
  EXPECT_EQ(three.status().code(), Code::kInternal);
  EXPECT_NE(three.status().ToString().find("reached twice"), std::string::npos)
      << three.status().ToString();
}

TEST_F(ThinMetadataTest, ABlockPastTheEndIsInternal) {
  std::vector<uint8_t> super = ReadBlock(0);
  PutLe64(super, 320, uint64_t{1} << 60);  // the mapping root, far past the file's end
  WriteSuperblock(0, super);
  auto one = ReadThinMappings(meta_, MetadataSource::kOfflineFile, 1, kBlock);
  EXPECT_EQ(one.status().code(), Code::kInternal) << one.status().ToString();
}

TEST_F(ThinMetadataTest, GarbageIsRefused) {
  // Block 0 zeroed: no superblock.
  {
    std::fstream f(meta_, std::ios::in | std::ios::out | std::ios::binary);
    const std::vector<char> zeros(kMetaBlock);
    f.write(zeros.data(), kMetaBlock);
  }
  EXPECT_EQ(ReadThinMappings(meta_, MetadataSource::kOfflineFile, 1, kBlock).status().code(),
            Code::kInternal);
  EXPECT_FALSE(ReadThinMappings(dir_ / "absent", MetadataSource::kOfflineFile, 1, kBlock).ok());
}

TEST(IntersectRangesTest, KeepsOnlyTheOverlaps) {
  const std::vector<ByteRange> unused = {{0, 10}, {20, 10}, {40, 10}, {60, 5}};
  const std::vector<ByteRange> mapped = {{5, 20}, {45, 1}, {48, 20}};
  EXPECT_EQ(IntersectRanges(unused, mapped),
            (std::vector<ByteRange>{{5, 5}, {20, 5}, {45, 1}, {48, 2}, {60, 5}}));
  EXPECT_TRUE(IntersectRanges(unused, {}).empty());
  EXPECT_TRUE(IntersectRanges({}, mapped).empty());
  EXPECT_TRUE(IntersectRanges({{0, 10}}, {{10, 10}}).empty());
}

}  // namespace
}  // namespace thinsnap

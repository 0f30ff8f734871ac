#include "pool/thin_metadata.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

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
  // snapshot: the superblock's held_root (byte 56) names a copy of the
  // superblock, here in the file's last block, and the live superblock's
  // mapping root (byte 320) points elsewhere (to itself, not a btree node).
  void HoldSnapshot() {
    std::fstream f(meta_, std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> super(kMetaBlock);
    f.read(super.data(), kMetaBlock);
    const uint64_t held = (8 << 20) / kMetaBlock - 1;
    f.seekp(static_cast<std::streamoff>(held * kMetaBlock));
    f.write(super.data(), kMetaBlock);
    const uint64_t held_le = htole64(held), zero = 0;
    std::memcpy(super.data() + 56, &held_le, 8);
    std::memcpy(super.data() + 320, &zero, 8);
    f.seekp(0);
    f.write(super.data(), kMetaBlock);
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

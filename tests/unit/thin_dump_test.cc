#include "pool/thin_dump.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/subprocess.h"

namespace thinsnap {
namespace {

constexpr uint64_t kBlock = 64 << 10;

// Device 1 (created at time 0) maps blocks 0-9. Device 2, its snapshot
// (created at time 1), inherited 0-3 and 5-9, rewrote block 4 at time 1 and
// wrote 20-22 at time 2. Device 3, a later snapshot of 1, wrote nothing.
constexpr char kMetadataXml[] =
    R"(<superblock uuid="" time="2" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="10" transaction="0" creation_time="0" snap_time="2">
    <range_mapping origin_begin="0" data_begin="0" length="10" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="13" transaction="0" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>
    <single_mapping origin_block="4" data_block="100" time="1"/>
    <range_mapping origin_begin="5" data_begin="5" length="5" time="0"/>
    <range_mapping origin_begin="20" data_begin="200" length="3" time="2"/>
  </device>
  <device dev_id="3" mapped_blocks="10" transaction="0" creation_time="2" snap_time="2">
    <range_mapping origin_begin="0" data_begin="0" length="10" time="0"/>
  </device>
</superblock>
)";

// Runs the real thin_dump (thin-provisioning-tools, a build dependency) on
// metadata restored from kMetadataXml, so the parser is held to what the
// tool really prints, not to a copy of it.
std::string RealThinDump(const std::vector<std::string>& ids) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("thin_dump_test." + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string xml = (dir / "meta.xml").string();
  const std::string meta = (dir / "meta.bin").string();
  std::ofstream(xml) << kMetadataXml;
  { std::ofstream(meta).flush(); }
  std::filesystem::resize_file(meta, 8 << 20);
  Status restored = RunChecked({"thin_restore", "-i", xml, "-o", meta});
  EXPECT_TRUE(restored.ok()) << restored.ToString();
  std::vector<std::string> argv = {"thin_dump"};
  for (const std::string& id : ids) argv.insert(argv.end(), {"--dev-id", id});
  argv.push_back(meta);
  auto out = RunCommand(argv);
  std::filesystem::remove_all(dir);
  EXPECT_TRUE(out.ok() && out->exit_code == 0) << (out.ok() ? out->err : out.status().ToString());
  return out.ok() ? out->out : "";
}

TEST(ThinDumpTest, OwnRangesAreWhatEachDeviceWroteAfterItsCreation) {
  auto own = ParseThinDumpOwnRanges(RealThinDump({"2", "3", "1"}), kBlock);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  ASSERT_EQ(own->size(), 3u);
  EXPECT_EQ(own->at(2), (std::vector<ByteRange>{{4 * kBlock, kBlock}, {20 * kBlock, 3 * kBlock}}));
  EXPECT_TRUE(own->at(3).empty());
  EXPECT_EQ(own->at(1), (std::vector<ByteRange>{{0, 10 * kBlock}}));  // made by create_thin
}

TEST(ThinDumpTest, OnlyTheDevicesAskedForAreListed) {
  auto own = ParseThinDumpOwnRanges(RealThinDump({"3"}), kBlock);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ(own->size(), 1u);
  EXPECT_TRUE(own->count(3));
}

TEST(ThinDumpTest, TouchingRangesAreMerged) {
  const char* xml = R"(<superblock uuid="" time="5">
  <device dev_id="7" mapped_blocks="3" transaction="0" creation_time="4" snap_time="4">
    <single_mapping origin_block="2" data_block="9" time="4"/>
    <range_mapping origin_begin="3" data_begin="30" length="2" time="5"/>
    <single_mapping origin_block="5" data_block="8" time="3"/>
  </device>
</superblock>)";
  auto own = ParseThinDumpOwnRanges(xml, kBlock);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ(own->at(7), (std::vector<ByteRange>{{2 * kBlock, 3 * kBlock}}));
}

TEST(ThinDumpTest, GarbageIsRefused) {
  EXPECT_EQ(ParseThinDumpOwnRanges("", kBlock).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseThinDumpOwnRanges("thin_dump: bad checksum", kBlock).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(ParseThinDumpOwnRanges(
                "<superblock><single_mapping origin_block=\"1\" time=\"1\"/></superblock>", kBlock)
                .status()
                .code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace thinsnap

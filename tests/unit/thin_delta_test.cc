#include "pool/thin_delta.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/subprocess.h"

namespace thinsnap {
namespace {

constexpr uint64_t kBlock = 64 << 10;

// Origin 1 maps blocks 0-9; snapshot 2 shares 0-3 and 5-9, rewrote block 4
// and wrote 20-22, which 1 never mapped.
constexpr char kMetadataXml[] =
    R"(<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="10" transaction="0" creation_time="0" snap_time="0">
    <range_mapping origin_begin="0" data_begin="0" length="10" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="13" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>
    <single_mapping origin_block="4" data_block="100" time="1"/>
    <range_mapping origin_begin="5" data_begin="5" length="5" time="0"/>
    <range_mapping origin_begin="20" data_begin="200" length="3" time="1"/>
  </device>
</superblock>
)";

const std::vector<ByteRange> kOwn = {{4 * kBlock, kBlock}, {20 * kBlock, 3 * kBlock}};

// Runs the real thin_delta (thin-provisioning-tools, a build dependency) on
// metadata restored from kMetadataXml, so the parser is held to what the
// tool really prints, not to a copy of it.
std::string RealThinDelta(const std::vector<std::string>& extra) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("thin_delta_test." + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string xml = (dir / "meta.xml").string();
  const std::string meta = (dir / "meta.bin").string();
  std::ofstream(xml) << kMetadataXml;
  { std::ofstream(meta).flush(); }
  std::filesystem::resize_file(meta, 8 << 20);
  Status restored = RunChecked({"thin_restore", "-i", xml, "-o", meta});
  EXPECT_TRUE(restored.ok()) << restored.ToString();
  std::vector<std::string> argv = {"thin_delta", "--snap1", "1", "--snap2", "2"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(meta);
  auto out = RunCommand(argv);
  std::filesystem::remove_all(dir);
  EXPECT_TRUE(out.ok() && out->exit_code == 0) << (out.ok() ? out->err : out.status().ToString());
  return out.ok() ? out->out : "";
}

TEST(ThinDeltaTest, OwnRangesAreTheDifferentAndRightOnlyRuns) {
  auto ranges = ParseThinDeltaOwnRanges(RealThinDelta({}), kBlock);
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_EQ(*ranges, kOwn);
}

TEST(ThinDeltaTest, VerboseOutputGivesTheSameRanges) {
  auto ranges = ParseThinDeltaOwnRanges(RealThinDelta({"--verbose"}), kBlock);
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_EQ(*ranges, kOwn);
}

TEST(ThinDeltaTest, TouchingRunsAreMergedAndLeftOnlyIsIgnored) {
  const char* xml =
      R"(<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="1000">
  <diff left="1" right="2">
    <different begin="2" length="1"/>
    <right_only begin="3" length="2"/>
    <left_only begin="8" length="4"/>
  </diff>
</superblock>)";
  auto ranges = ParseThinDeltaOwnRanges(xml, kBlock);
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_EQ(*ranges, (std::vector<ByteRange>{{2 * kBlock, 3 * kBlock}}));
}

TEST(ThinDeltaTest, IdenticalDevicesOwnNothing) {
  auto ranges = ParseThinDeltaOwnRanges(
      "<superblock uuid=\"\">\n  <diff left=\"1\" right=\"2\">\n    <same begin=\"0\" "
      "length=\"10\"/>\n  </diff>\n</superblock>\n",
      kBlock);
  ASSERT_TRUE(ranges.ok());
  EXPECT_TRUE(ranges->empty());
}

TEST(ThinDeltaTest, GarbageIsRefused) {
  EXPECT_EQ(ParseThinDeltaOwnRanges("", kBlock).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseThinDeltaOwnRanges("thin_delta: no such device", kBlock).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(ParseThinDeltaOwnRanges("<superblock><different begin=\"x\"/></superblock>", kBlock)
                .status()
                .code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace thinsnap

// Parsers of dm/thin.h on the exact lines the kernel printed (dm-thin-facts.md),
// plus malformed input, which must be rejected rather than misread.
#include <gtest/gtest.h>

#include "dm/device_mapper.h"
#include "dm/thin.h"

namespace thinsnap::dm {
namespace {

TEST(DmThinPoolStatus, Fresh) {
  auto s = ParseThinPoolStatus(
      "0 8388608 thin-pool 0 3292/32768 0/65536 - rw discard_passdown error_if_no_space - 1024");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_FALSE(s->failed);
  EXPECT_EQ(s->transaction_id, 0u);
  EXPECT_EQ(s->meta_used_blocks, 3292u);
  EXPECT_EQ(s->meta_total_blocks, 32768u);
  EXPECT_EQ(s->data_used_blocks, 0u);
  EXPECT_EQ(s->data_total_blocks, 65536u);
  EXPECT_FALSE(s->held_metadata_root.has_value());
  EXPECT_EQ(s->mode, PoolMode::kReadWrite);
  EXPECT_EQ(s->discard, DiscardMode::kPassdown);
  EXPECT_TRUE(s->error_if_no_space);
  EXPECT_FALSE(s->needs_check);
  ASSERT_TRUE(s->metadata_low_water.has_value());
  EXPECT_EQ(*s->metadata_low_water, 1024u);
}

TEST(DmThinPoolStatus, AfterTransactionAndTwoThins) {
  auto s = ParseThinPoolStatus(
      "0 8388608 thin-pool 7 3294/32768 465/65536 - rw discard_passdown error_if_no_space - 1024");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->transaction_id, 7u);
  EXPECT_EQ(s->meta_used_blocks, 3294u);
  EXPECT_EQ(s->data_used_blocks, 465u);
  EXPECT_EQ(s->data_total_blocks, 65536u);
}

TEST(DmThinPoolStatus, HeldMetadataRoot) {
  auto s = ParseThinPoolStatus(
      "0 8388608 thin-pool 7 3295/32768 465/65536 866 rw discard_passdown error_if_no_space - "
      "1024");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE(s->held_metadata_root.has_value());
  EXPECT_EQ(*s->held_metadata_root, 866u);
  EXPECT_EQ(s->meta_used_blocks, 3295u);
}

TEST(DmThinPoolStatus, FullPool) {
  auto s = ParseThinPoolStatus(
      "0 131072 thin-pool 0 424/4096 1024/1024 - out_of_data_space discard_passdown "
      "error_if_no_space - 1024");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->mode, PoolMode::kOutOfDataSpace);
  EXPECT_EQ(s->data_used_blocks, 1024u);
  EXPECT_EQ(s->data_total_blocks, 1024u);
  EXPECT_EQ(s->meta_total_blocks, 4096u);
}

TEST(DmThinPoolStatus, LvmQueueIfNoSpace) {
  auto s = ParseThinPoolStatus(
      "0 2097152 thin-pool 0 112/1024 0/16384 - rw discard_passdown queue_if_no_space - 256");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_FALSE(s->error_if_no_space);
  EXPECT_EQ(*s->metadata_low_water, 256u);
}

TEST(DmThinPoolStatus, OtherModesAndFlags) {
  auto s = ParseThinPoolStatus(
      "0 8 thin-pool 3 1/2 3/4 - ro ignore_discard queue_if_no_space needs_check");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->mode, PoolMode::kReadOnly);
  EXPECT_EQ(s->discard, DiscardMode::kIgnore);
  EXPECT_TRUE(s->needs_check);
  EXPECT_FALSE(s->metadata_low_water.has_value());  // pre-4.19 layout

  s = ParseThinPoolStatus("0 8 thin-pool 3 1/2 3/4 - rw no_discard_passdown queue_if_no_space - 9");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->discard, DiscardMode::kNoPassdown);
}

TEST(DmThinPoolStatus, Fail) {
  auto s = ParseThinPoolStatus("0 8388608 thin-pool Fail");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->failed);
}

TEST(DmThinPoolStatus, MalformedIsAnError) {
  const char* bad[] = {
      "",
      "   ",
      "0",
      "0 8388608",
      "0 8388608 thin-pool",
      "0 8388608 thin 0 -",
      "x 8388608 thin-pool 0 3292/32768 0/65536 - rw discard_passdown error_if_no_space - 1024",
      "0 8388608 thin-pool x 3292/32768 0/65536 - rw discard_passdown error_if_no_space - 1024",
      "0 8388608 thin-pool 0 3292 0/65536 - rw discard_passdown error_if_no_space - 1024",
      "0 8388608 thin-pool 0 3292/ 0/65536 - rw discard_passdown error_if_no_space - 1024",
      "0 8388608 thin-pool 0 /32768 0/65536 - rw discard_passdown error_if_no_space - 1024",
      "0 8388608 thin-pool 0 3292/32768 0/65536/1 - rw discard_passdown error_if_no_space - 1024",
      "0 8388608 thin-pool 0 3292/32768 0/65536 -1 rw discard_passdown error_if_no_space - 1024",
      "0 8388608 thin-pool 0 3292/32768 0/65536 - rx discard_passdown error_if_no_space - 1024",
      "0 8388608 thin-pool 0 3292/32768 0/65536 - rw passdown error_if_no_space - 1024",
      "0 8388608 thin-pool 0 3292/32768 0/65536 - rw discard_passdown error - 1024",
      "0 8388608 thin-pool 0 3292/32768 0/65536 - rw discard_passdown error_if_no_space x 1024",
      "0 8388608 thin-pool 0 3292/32768 0/65536 - rw discard_passdown error_if_no_space - 1k",
      "0 8388608 thin-pool 0 3292/32768 0/65536 - rw discard_passdown error_if_no_space - 1024 7",
      "0 8388608 thin-pool 0 3292/32768 0/65536 - rw discard_passdown",
      "0 8388608 thin-pool 99999999999999999999 3292/32768 0/65536 - rw discard_passdown "
      "error_if_no_space - 1024",
      "0 8388608 thin-pool Fail extra",
  };
  for (const char* line : bad) {
    auto s = ParseThinPoolStatus(line);
    EXPECT_FALSE(s.ok()) << "accepted: '" << line << "'";
    if (!s.ok()) {
      EXPECT_EQ(s.status().code(), Code::kInvalidArgument);
    }
  }
}

TEST(DmThinStatus, NeverWritten) {
  auto s = ParseThinStatus("0 2097152 thin 0 -");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_FALSE(s->failed);
  EXPECT_EQ(s->mapped_sectors, 0u);
  EXPECT_FALSE(s->highest_mapped_sector.has_value());
}

TEST(DmThinStatus, AfterMkfsAndWrite) {
  auto s = ParseThinStatus("0 2097152 thin 59520 2097151");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->mapped_sectors, 59520u);
  ASSERT_TRUE(s->highest_mapped_sector.has_value());
  EXPECT_EQ(*s->highest_mapped_sector, 2097151u);
}

TEST(DmThinStatus, OnFullPool) {
  auto s = ParseThinStatus("0 1048576 thin 131072 131071");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->mapped_sectors, 131072u);
  EXPECT_EQ(*s->highest_mapped_sector, 131071u);
}

TEST(DmThinStatus, Fail) {
  auto s = ParseThinStatus("0 2097152 thin Fail");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->failed);
}

TEST(DmThinStatus, MalformedIsAnError) {
  const char* bad[] = {"",
                       "0 2097152 thin",
                       "0 2097152 thin 0",
                       "0 2097152 thin - -",
                       "0 2097152 thin 0 - 1",
                       "0 2097152 thin -5 -",
                       "0 2097152 thin 5 x",
                       "0 2097152 thin-pool 0 -",
                       "0 x thin 0 -",
                       "0 2097152 thin 0 3292/32768"};
  for (const char* line : bad) {
    auto s = ParseThinStatus(line);
    EXPECT_FALSE(s.ok()) << "accepted: '" << line << "'";
  }
}

TEST(DmThinPoolTable, RealTable) {
  auto t = ParseThinPoolTable(
      "0 8388608 thin-pool 7:1 7:0 128 32768 2 skip_block_zeroing error_if_no_space");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->length_sectors, 8388608u);
  EXPECT_EQ(t->metadata_dev, (DevNum{7, 1}));
  EXPECT_EQ(t->data_dev, (DevNum{7, 0}));
  EXPECT_EQ(t->block_sectors, 128u);
  EXPECT_EQ(t->low_water_blocks, 32768u);
  EXPECT_EQ(t->features, (std::vector<std::string>{"skip_block_zeroing", "error_if_no_space"}));
}

TEST(DmThinPoolTable, RoundTrip) {
  const std::string line =
      "0 8388608 thin-pool 7:1 7:0 128 32768 2 skip_block_zeroing error_if_no_space";
  auto t = ParseThinPoolTable(line);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->ToTarget().ToString(), line);

  ThinPoolTable none;
  none.length_sectors = 2048;
  none.metadata_dev = DevNum{253, 4};
  none.data_dev = DevNum{253, 5};
  none.block_sectors = 128;
  none.low_water_blocks = 0;
  EXPECT_EQ(none.ToTarget().ToString(), "0 2048 thin-pool 253:4 253:5 128 0 0");
  auto back = ParseThinPoolTable(none.ToTarget().ToString());
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->features.empty());
}

TEST(DmThinPoolTable, MalformedIsAnError) {
  const char* bad[] = {
      "",
      "0 8388608 thin-pool",
      "0 8388608 thin-pool 7:1 7:0 128 32768",
      "0 8388608 thin-pool 7:1 7:0 128 32768 2 skip_block_zeroing",
      "0 8388608 thin-pool 7:1 7:0 128 32768 1 skip_block_zeroing error_if_no_space",
      "0 8388608 thin-pool 7 7:0 128 32768 0",
      "0 8388608 thin-pool 7:1 7: 128 32768 0",
      "0 8388608 thin-pool :1 7:0 128 32768 0",
      "0 8388608 thin-pool 7:1 7:0 x 32768 0",
      "0 8388608 thin 7:1 7:0 128 32768 0",
      "0 8388608 thin-pool 7:1 7:0 128 32768 99999999999999999999",
  };
  for (const char* line : bad) {
    EXPECT_FALSE(ParseThinPoolTable(line).ok()) << "accepted: '" << line << "'";
  }
}

TEST(DmTargets, ThinTargetLine) {
  EXPECT_EQ(ThinTarget(2097152, DevNum{253, 0}, 42).ToString(), "0 2097152 thin 253:0 42");
}

TEST(DmDevNum, Parse) {
  auto d = ParseDevNum("253:17");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, (DevNum{253, 17}));
  EXPECT_EQ(d->ToString(), "253:17");
  for (const char* bad : {"", ":", "253", "253:", ":1", "a:b", "1:2:3", "-1:2", "1:2 "}) {
    EXPECT_FALSE(ParseDevNum(bad).ok()) << bad;
  }
}

TEST(DmNames, Validate) {
  EXPECT_TRUE(ValidateName("pool-thin-16777215").ok());
  EXPECT_TRUE(ValidateName(std::string(kMaxNameLength, 'a')).ok());
  EXPECT_FALSE(ValidateName(std::string(kMaxNameLength + 1, 'a')).ok());
  EXPECT_FALSE(ValidateName("").ok());
  EXPECT_FALSE(ValidateName("a/b").ok());
  EXPECT_FALSE(ValidateName("..").ok());
  EXPECT_EQ(MapperPath("p-thin-1"), "/dev/mapper/p-thin-1");
}

}  // namespace
}  // namespace thinsnap::dm

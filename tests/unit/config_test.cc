#include "daemon/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace thinsnap {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thinsnap-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/thinsnap.toml";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Result<Config> Load(const std::string& text) {
    std::ofstream(path_) << text;
    return LoadConfig(path_);
  }

  // Loads `text` and expects InvalidArgument naming `key` on `line`.
  void ExpectKeyError(const std::string& text, const std::string& key, int line) {
    Result<Config> config = Load(text);
    ASSERT_FALSE(config.ok()) << text;
    EXPECT_EQ(config.status().code(), Code::kInvalidArgument);
    EXPECT_NE(config.status().message().find(path_ + ":" + std::to_string(line) + ": " + key + ":"),
              std::string::npos)
        << config.status().message();
  }

  std::string dir_;
  std::string path_;
};

TEST_F(ConfigTest, EmptyFileGivesDefaults) {
  Result<Config> config = Load("");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->root_dir, "/var/lib/thinsnap");
  EXPECT_EQ(config->socket, "/run/thinsnap/thinsnap.sock");
  EXPECT_EQ(config->pool_name, "");
  EXPECT_EQ(config->base_size_bytes, 10ull << 30);
  EXPECT_EQ(config->fs_type, "ext4");
  EXPECT_TRUE(config->fs_options.empty());
  EXPECT_FALSE(config->async_remove);
  EXPECT_EQ(config->min_free_space_percent, 10.0);
  EXPECT_EQ(config->log_level, "info");
}

TEST_F(ConfigTest, EveryKeyOverridesItsDefault) {
  Result<Config> config = Load(R"(
root_dir = "/srv/thinsnap"
socket = "/run/ts/ts.sock"
pool_name = "ts-pool"
base_size = "512MiB"
fs_type = "ext3"
fs_options = ["-E", "lazy_itable_init=1"]
async_remove = true
min_free_space_percent = 2.5
log_level = "debug"
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->root_dir, "/srv/thinsnap");
  EXPECT_EQ(config->socket, "/run/ts/ts.sock");
  EXPECT_EQ(config->pool_name, "ts-pool");
  EXPECT_EQ(config->base_size_bytes, 512ull << 20);
  EXPECT_EQ(config->fs_type, "ext3");
  EXPECT_EQ(config->fs_options, (std::vector<std::string>{"-E", "lazy_itable_init=1"}));
  EXPECT_TRUE(config->async_remove);
  EXPECT_EQ(config->min_free_space_percent, 2.5);
  EXPECT_EQ(config->log_level, "debug");
  EXPECT_TRUE(ValidateConfig(*config).ok());
}

TEST_F(ConfigTest, IntegerPercentAndIntegerBaseSize) {
  Result<Config> config = Load("min_free_space_percent = 0\nbase_size = 1048576\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->min_free_space_percent, 0.0);
  EXPECT_EQ(config->base_size_bytes, 1048576u);
}

TEST_F(ConfigTest, MissingFileIsNotFound) {
  Result<Config> config = LoadConfig(dir_ + "/absent.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), Code::kNotFound);
  EXPECT_NE(config.status().message().find("absent.toml"), std::string::npos);
}

TEST_F(ConfigTest, SyntaxErrorNamesTheLine) {
  Result<Config> config = Load("pool_name = \"p\"\n\nbase_size = = 3\n");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(config.status().message().rfind(path_ + ":3: ", 0), 0u) << config.status().message();
}

TEST_F(ConfigTest, DuplicateKeyIsAnError) {
  Result<Config> config = Load("pool_name = \"a\"\npool_name = \"b\"\n");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message().rfind(path_ + ":2: ", 0), 0u) << config.status().message();
}

TEST_F(ConfigTest, UnknownKeyNamesKeyAndLine) {
  ExpectKeyError("pool_name = \"p\"\npoolname = \"p\"\n", "poolname", 2);
}

TEST_F(ConfigTest, UnknownTableNamesKeyAndLine) {
  ExpectKeyError("pool_name = \"p\"\n\n[extra]\nx = 1\n", "extra", 3);
}

TEST_F(ConfigTest, WrongTypesNameKeyAndLine) {
  ExpectKeyError("root_dir = 1\n", "root_dir", 1);
  ExpectKeyError("\nsocket = true\n", "socket", 2);
  ExpectKeyError("pool_name = [\"a\"]\n", "pool_name", 1);
  ExpectKeyError("base_size = true\n", "base_size", 1);
  ExpectKeyError("base_size = 1.5\n", "base_size", 1);
  ExpectKeyError("fs_type = 4\n", "fs_type", 1);
  ExpectKeyError("fs_options = \"-E\"\n", "fs_options", 1);
  ExpectKeyError("fs_options = [\"-E\", 1]\n", "fs_options", 1);
  ExpectKeyError("async_remove = \"yes\"\n", "async_remove", 1);
  ExpectKeyError("min_free_space_percent = \"10\"\n", "min_free_space_percent", 1);
  ExpectKeyError("log_level = 3\n", "log_level", 1);
}

TEST_F(ConfigTest, BadValuesNameKeyAndLine) {
  ExpectKeyError("pool_name = \"\"\n", "pool_name", 1);
  ExpectKeyError("root_dir = \"\"\n", "root_dir", 1);
  ExpectKeyError("base_size = \"10 GB\"\n", "base_size", 1);
  ExpectKeyError("base_size = \"GiB\"\n", "base_size", 1);
  ExpectKeyError("base_size = 0\n", "base_size", 1);
  ExpectKeyError("base_size = -4096\n", "base_size", 1);
  ExpectKeyError("base_size = 1000\n", "base_size", 1);
  ExpectKeyError("fs_type = \"xfs\"\n", "fs_type", 1);
  ExpectKeyError("min_free_space_percent = 100\n", "min_free_space_percent", 1);
  ExpectKeyError("min_free_space_percent = -1\n", "min_free_space_percent", 1);
  ExpectKeyError("min_free_space_percent = nan\n", "min_free_space_percent", 1);
  ExpectKeyError("log_level = \"verbose\"\n", "log_level", 1);
}

TEST_F(ConfigTest, MetricsAddressIsOffByDefaultAndValidated) {
  Result<Config> defaults = Load("pool_name = \"p\"\n");
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->metrics_address, "");
  Result<Config> set = Load("metrics_address = \"127.0.0.1:9500\"\n");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->metrics_address, "127.0.0.1:9500");
  Result<Config> off = Load("metrics_address = \"\"\n");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->metrics_address, "");
  ExpectKeyError("pool_name = \"p\"\nmetrics_address = \"unix:/run/thinsnap/metrics.sock\"\n",
                 "metrics_address", 2);
  ExpectKeyError("metrics_address = \"localhost:9500\"\n", "metrics_address", 1);
  ExpectKeyError("metrics_address = 9500\n", "metrics_address", 1);
}

TEST(ParseSizeTest, AcceptsEveryUnit) {
  EXPECT_EQ(*ParseSize("512"), 512u);
  EXPECT_EQ(*ParseSize("1024B"), 1024u);
  EXPECT_EQ(*ParseSize("1K"), 1024u);
  EXPECT_EQ(*ParseSize("3KiB"), 3u << 10);
  EXPECT_EQ(*ParseSize("5M"), 5ull << 20);
  EXPECT_EQ(*ParseSize("5MiB"), 5ull << 20);
  EXPECT_EQ(*ParseSize("10G"), 10ull << 30);
  EXPECT_EQ(*ParseSize("10GiB"), 10ull << 30);
  EXPECT_EQ(*ParseSize("2T"), 2ull << 40);
  EXPECT_EQ(*ParseSize("2TiB"), 2ull << 40);
}

TEST(ParseSizeTest, RejectsMalformedSizes) {
  for (const char* bad : {"", "G", "1.5G", "-1G", "10 G", "10g", "10GB", "10Gi", "0", "0G", "100",
                          "20000000T", "99999999999999999999"}) {
    Result<uint64_t> size = ParseSize(bad);
    EXPECT_EQ(size.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(ValidateConfigTest, RequiresPoolName) {
  Config config;
  Status st = ValidateConfig(config);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("pool_name"), std::string::npos);
  config.pool_name = "pool";
  EXPECT_TRUE(ValidateConfig(config).ok());
}

TEST(ValidateConfigTest, RejectsRelativePathsLongSocketAndBadLogLevel) {
  Config config;
  config.pool_name = "pool";
  config.root_dir = "var/lib/thinsnap";
  EXPECT_NE(ValidateConfig(config).message().find("root_dir"), std::string::npos);
  config.root_dir = "/var/lib/thinsnap";
  config.socket = "thinsnap.sock";
  EXPECT_NE(ValidateConfig(config).message().find("socket"), std::string::npos);
  config.socket = "/" + std::string(200, 's');
  EXPECT_NE(ValidateConfig(config).message().find("socket"), std::string::npos);
  config.socket = "/run/thinsnap/thinsnap.sock";
  config.log_level = "loud";
  EXPECT_NE(ValidateConfig(config).message().find("log_level"), std::string::npos);
}

}  // namespace
}  // namespace thinsnap

#include "daemon/config.h"

#include <fmt/format.h>
#include <sys/un.h>
#include <toml++/toml.h>

#include <array>
#include <charconv>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>

#include "metrics/address.h"

namespace thinsnap {

namespace {

constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug",    "info", "warn",
                                                        "error", "critical", "off"};

bool IsLogLevel(std::string_view level) {
  for (std::string_view known : kLogLevels) {
    if (level == known) return true;
  }
  return false;
}

bool IsExtType(std::string_view type) { return type == "ext2" || type == "ext3" || type == "ext4"; }

// Errors point at the offending key in the file.
class KeyError {
 public:
  KeyError(const std::string& path, const toml::key& key, const toml::node& value)
      : prefix_(path + ":" + std::to_string(value.source().begin.line) + ": " +
                std::string(key.str()) + ": ") {}
  Status operator()(const std::string& problem) const {
    return Status::InvalidArgument(prefix_ + problem);
  }

 private:
  std::string prefix_;
};

using KeyHandler = std::function<Status(const toml::node&, const KeyError&, Config&)>;

Status ReadString(const toml::node& node, const KeyError& err, std::string& out) {
  const auto* value = node.as_string();
  if (value == nullptr) return err("expected a string");
  if (value->get().empty()) return err("must not be empty");
  out = value->get();
  return Status::Ok();
}

// A non-empty string stored in `field`.
KeyHandler StringKey(std::string Config::*field) {
  return [field](const toml::node& n, const KeyError& e, Config& c) {
    return ReadString(n, e, c.*field);
  };
}

// A size, as a string with a unit ("10GiB") or an integer of bytes.
KeyHandler SizeKey(uint64_t Config::*field) {
  return [field](const toml::node& n, const KeyError& e, Config& c) {
    std::string text;
    if (const auto* bytes = n.as_integer()) {
      if (bytes->get() <= 0) return e("must be positive");
      text = std::to_string(bytes->get());
    } else if (const auto* str = n.as_string()) {
      text = str->get();
    } else {
      return e("expected a size string like \"10GiB\" or an integer");
    }
    Result<uint64_t> size = ParseSize(text);
    if (!size.ok()) return e(size.status().message());
    c.*field = *size;
    return Status::Ok();
  };
}

// A number in [low, high).
KeyHandler PercentKey(double Config::*field, double low, double high) {
  return [=](const toml::node& n, const KeyError& e, Config& c) {
    double percent;
    if (const auto* i = n.as_integer()) {
      percent = static_cast<double>(i->get());
    } else if (const auto* f = n.as_floating_point()) {
      percent = f->get();
    } else {
      return e("expected a number");
    }
    if (!(percent >= low && percent < high)) {
      return e(fmt::format("must be in [{}, {})", low, high));
    }
    c.*field = percent;
    return Status::Ok();
  };
}

KeyHandler BoolKey(bool Config::*field) {
  return [field](const toml::node& n, const KeyError& e, Config& c) {
    const auto* value = n.as_boolean();
    if (value == nullptr) return e("expected true or false");
    c.*field = value->get();
    return Status::Ok();
  };
}

const std::map<std::string, KeyHandler, std::less<>>& Handlers() {
  static const auto* handlers = new std::map<std::string, KeyHandler, std::less<>>{
      {"root_dir", StringKey(&Config::root_dir)},
      {"socket", StringKey(&Config::socket)},
      {"pool_name", StringKey(&Config::pool_name)},
      {"metrics_address",
       [](const toml::node& n, const KeyError& e, Config& c) {
         const auto* value = n.as_string();
         if (value == nullptr) return e("expected a string");
         Status valid = ValidateMetricsAddress(value->get());
         if (!valid.ok()) return e(valid.message());
         c.metrics_address = value->get();
         return Status::Ok();
       }},
      {"base_size", SizeKey(&Config::base_size_bytes)},
      {"max_snapshot_size", SizeKey(&Config::max_snapshot_size_bytes)},
      {"fs_type",
       [](const toml::node& n, const KeyError& e, Config& c) {
         THINSNAP_RETURN_IF_ERROR(ReadString(n, e, c.fs_type));
         if (!IsExtType(c.fs_type)) return e("must be one of ext2, ext3, ext4");
         return Status::Ok();
       }},
      {"fs_options",
       [](const toml::node& n, const KeyError& e, Config& c) {
         const auto* array = n.as_array();
         if (array == nullptr) return e("expected an array of strings");
         std::vector<std::string> options;
         for (const toml::node& element : *array) {
           const auto* option = element.as_string();
           if (option == nullptr) return e("expected an array of strings");
           options.push_back(option->get());
         }
         c.fs_options = std::move(options);
         return Status::Ok();
       }},
      {"async_remove", BoolKey(&Config::async_remove)},
      {"discard_unused_blocks", BoolKey(&Config::discard_unused_blocks)},
      {"min_free_space_percent", PercentKey(&Config::min_free_space_percent, 0, 100)},
      {"autoextend_threshold_percent", PercentKey(&Config::autoextend_threshold_percent, 0, 100)},
      {"autoextend_percent", PercentKey(&Config::autoextend_percent, 1, 1000)},
      {"autoextend_max_size", SizeKey(&Config::autoextend_max_size_bytes)},
      {"log_level",
       [](const toml::node& n, const KeyError& e, Config& c) {
         THINSNAP_RETURN_IF_ERROR(ReadString(n, e, c.log_level));
         if (!IsLogLevel(c.log_level)) {
           return e("must be one of trace, debug, info, warn, error, critical, off");
         }
         return Status::Ok();
       }},
  };
  return *handlers;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  uint64_t number = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [unit_begin, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc() || unit_begin == begin) {
    return Status::InvalidArgument("size " + quoted + " must start with a decimal integer");
  }
  static const std::map<std::string, uint64_t, std::less<>> kUnits = {
      {"", 1},           {"B", 1},
      {"K", 1ull << 10}, {"KiB", 1ull << 10},
      {"M", 1ull << 20}, {"MiB", 1ull << 20},
      {"G", 1ull << 30}, {"GiB", 1ull << 30},
      {"T", 1ull << 40}, {"TiB", 1ull << 40}};
  auto unit = kUnits.find(std::string_view(unit_begin, end - unit_begin));
  if (unit == kUnits.end()) {
    return Status::InvalidArgument("size " + quoted +
                                   " has an unknown unit (use B, K, KiB, M, MiB, G, GiB, T, TiB)");
  }
  if (number > std::numeric_limits<uint64_t>::max() / unit->second) {
    return Status::InvalidArgument("size " + quoted + " is too large");
  }
  const uint64_t bytes = number * unit->second;
  if (bytes == 0 || bytes % 512 != 0) {
    return Status::InvalidArgument("size " + quoted + " must be a positive multiple of 512 bytes");
  }
  return bytes;
}

Result<Config> LoadConfig(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Status::NotFound("config file " + path + " does not exist");
  }
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.source().begin.line) + ": " +
                                   std::string(e.description()));
  }
  Config config;
  for (const auto& [key, value] : table) {
    const KeyError err(path, key, value);
    auto handler = Handlers().find(key.str());
    if (handler == Handlers().end()) return err("unknown key");
    THINSNAP_RETURN_IF_ERROR(handler->second(value, err, config));
  }
  return config;
}

Status ValidateConfig(const Config& config) {
  if (config.pool_name.empty()) {
    return Status::InvalidArgument("pool_name is required (config file or --pool)");
  }
  if (config.root_dir.empty() || config.root_dir.front() != '/') {
    return Status::InvalidArgument("root_dir must be an absolute path: \"" + config.root_dir +
                                   "\"");
  }
  if (config.socket.empty() || config.socket.front() != '/') {
    return Status::InvalidArgument("socket must be an absolute path: \"" + config.socket + "\"");
  }
  if (config.socket.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument("socket path is longer than " +
                                   std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                                   " bytes: \"" + config.socket + "\"");
  }
  if (config.autoextend_threshold_percent > 0 && config.autoextend_max_size_bytes == 0) {
    return Status::InvalidArgument(
        "autoextend_threshold_percent is set but autoextend_max_size is not: say how large the "
        "pool may grow");
  }
  if (config.max_snapshot_size_bytes < config.base_size_bytes) {
    return Status::InvalidArgument(
        "max_snapshot_size (" + std::to_string(config.max_snapshot_size_bytes) +
        " bytes) is below base_size (" + std::to_string(config.base_size_bytes) + " bytes)");
  }
  if (!IsLogLevel(config.log_level)) {
    return Status::InvalidArgument(
        "log_level must be one of trace, debug, info, warn, error, "
        "critical, off: \"" +
        config.log_level + "\"");
  }
  return ValidateMetricsAddress(config.metrics_address);
}

}  // namespace thinsnap

#include "pool_admin.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "base/subprocess.h"
#include "descriptor.h"
#include "dm/device_mapper.h"
#include "dm/pool_resize.h"
#include "dm/thin.h"
#include "json.h"
#include "loop.h"
#include "size.h"

namespace thinsnap::ctl {

namespace {

namespace fs = std::filesystem;

constexpr const char* kDataFile = "data.img";
constexpr const char* kMetaFile = "meta.img";
constexpr uint64_t kSector = 512;
constexpr uint64_t kMetaBlock = 4096;

// A file or directory this run created; removed on scope exit unless kept.
class CreatedPath {
 public:
  CreatedPath(std::string path, bool is_dir) : path_(std::move(path)), is_dir_(is_dir) {}
  CreatedPath(const CreatedPath&) = delete;
  CreatedPath& operator=(const CreatedPath&) = delete;
  ~CreatedPath() {
    if (!keep_) (is_dir_ ? rmdir(path_.c_str()) : unlink(path_.c_str()));
  }
  void Keep() { keep_ = true; }

 private:
  std::string path_;
  bool is_dir_;
  bool keep_ = false;
};

// Creates `path` (which must not exist) as a sparse file of `size` bytes.
Status CreateSparseFile(const std::string& path, uint64_t size, bool zero_head) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "create " + path);
  Status st;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    st = Status::FromErrno(errno, "resize " + path + " to " + FormatSize(size));
  } else if (zero_head) {
    // dm-thin formats fresh metadata only when it finds no superblock. A new
    // file already reads as zeros; writing them also allocates the block, so
    // a file system without room fails here rather than in the kernel.
    static const char kZeros[kMetaBlock] = {};
    const ssize_t n = pwrite(fd, kZeros, sizeof(kZeros), 0);
    if (n != static_cast<ssize_t>(sizeof(kZeros)) || fsync(fd) != 0) {
      // A short write sets no errno; the file system ran out of room.
      st = Status::FromErrno(n >= 0 && n < static_cast<ssize_t>(sizeof(kZeros)) ? ENOSPC : errno,
                             "zero the metadata superblock of " + path);
    }
  }
  close(fd);
  if (!st.ok()) unlink(path.c_str());
  return st;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// The /dev/loopN behind a device number, or nullopt if it is not a loop device.
std::optional<std::string> LoopForDev(const dm::DevNum& dev) {
  const std::string sys = "/sys/dev/block/" + dev.ToString();
  std::error_code ec;
  if (!fs::exists(sys + "/loop", ec)) return std::nullopt;
  const fs::path real = fs::canonical(sys, ec);
  if (ec) return std::nullopt;
  return "/dev/" + real.filename().string();
}

Result<dm::ThinPoolTable> PoolTable(const std::string& name) {
  Result<dm::Table> table = dm::GetTable(name);
  if (!table.ok()) return table.status().Annotate("reading the table of " + name);
  if (table->size() != 1 || (*table)[0].type != "thin-pool") {
    return Status::InvalidArgument("device-mapper device " + name + " is not a thin pool");
  }
  return dm::ParseThinPoolTable((*table)[0].ToString());
}

// Names of the thin devices whose table points at the pool `pool_dev`.
Result<std::vector<std::string>> ThinDevicesOf(const dm::DevNum& pool_dev) {
  Result<std::vector<dm::DeviceEntry>> devices = dm::ListDevices();
  if (!devices.ok()) return devices.status();
  const std::string pool = pool_dev.ToString();
  std::vector<std::string> thins;
  for (const dm::DeviceEntry& dev : *devices) {
    Result<dm::Table> table = dm::GetTable(dev.name);
    if (!table.ok()) {
      if (table.status().code() == Code::kNotFound) continue;  // removed meanwhile
      return table.status();
    }
    for (const dm::Target& t : *table) {
      if (t.type == "thin" && t.params.substr(0, t.params.find(' ')) == pool) {
        thins.push_back(dev.name);
        break;
      }
    }
  }
  return thins;
}

Status CheckNameFree(const std::string& name) {
  THINSNAP_RETURN_IF_ERROR(dm::ValidateName(name));
  Result<dm::DeviceInfo> info = dm::GetInfo(name);
  if (!info.ok()) return info.status();
  if (info->exists) {
    return Status::AlreadyExists("a device-mapper device named " + name + " already exists");
  }
  return Status::Ok();
}

// Attaches both files and creates the pool on them. The loops are detached
// again if the pool cannot be created.
Result<LoopPool> Assemble(const std::string& name, const std::string& data_file,
                          const std::string& meta_file, uint64_t block_size, uint64_t low_water) {
  struct stat data_st, meta_st;
  if (stat(data_file.c_str(), &data_st) != 0) return Status::FromErrno(errno, "stat " + data_file);
  if (stat(meta_file.c_str(), &meta_st) != 0) return Status::FromErrno(errno, "stat " + meta_file);
  const uint64_t data_size = static_cast<uint64_t>(data_st.st_size);
  if (data_size < block_size || block_size % kSector != 0) {
    return Status::InvalidArgument(data_file + " is smaller than one " + FormatSize(block_size) +
                                   " block");
  }

  Result<LoopDevice> meta = LoopDevice::Attach(meta_file);
  if (!meta.ok()) return meta.status();
  Result<LoopDevice> data = LoopDevice::Attach(data_file);
  if (!data.ok()) return data.status();

  dm::ThinPoolTable table;
  // Whole blocks only: the kernel ignores a trailing partial block anyway.
  table.length_sectors = data_size / block_size * block_size / kSector;
  Result<dm::DevNum> meta_dev = dm::ParseDevNum(meta->DevNo());
  Result<dm::DevNum> data_dev = dm::ParseDevNum(data->DevNo());
  if (!meta_dev.ok()) return meta_dev.status();
  if (!data_dev.ok()) return data_dev.status();
  table.metadata_dev = *meta_dev;
  table.data_dev = *data_dev;
  table.block_sectors = block_size / kSector;
  table.low_water_blocks = low_water;
  table.features = {"skip_block_zeroing", "error_if_no_space"};
  THINSNAP_RETURN_IF_ERROR(
      dm::Create(name, {table.ToTarget()}).Annotate("creating thin pool " + name));

  meta->Release();
  data->Release();
  return LoopPool{name,
                  data_file,
                  meta_file,
                  data->path(),
                  meta->path(),
                  data_size,
                  static_cast<uint64_t>(meta_st.st_size),
                  block_size};
}

std::string Percent(uint64_t used, uint64_t total) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", total == 0 ? 0.0 : 100.0 * used / total);
  return buf;
}

const char* ModeName(dm::PoolMode mode) {
  switch (mode) {
    case dm::PoolMode::kReadWrite:
      return "rw";
    case dm::PoolMode::kReadOnly:
      return "ro";
    case dm::PoolMode::kOutOfDataSpace:
      return "out_of_data_space";
  }
  return "unknown";
}

const char* DiscardName(dm::DiscardMode mode) {
  switch (mode) {
    case dm::DiscardMode::kPassdown:
      return "discard_passdown";
    case dm::DiscardMode::kNoPassdown:
      return "no_discard_passdown";
    case dm::DiscardMode::kIgnore:
      return "ignore_discard";
  }
  return "unknown";
}

}  // namespace

Status ValidateLoopPoolSpec(const LoopPoolSpec& spec) {
  if (spec.dir.empty()) return Status::InvalidArgument("--dir must not be empty");
  THINSNAP_RETURN_IF_ERROR(dm::ValidateName(spec.name).Annotate("pool name"));
  const uint64_t b = spec.block_size;
  if (b < kBlockSizeUnit || b > kMaxBlockSize || b % kBlockSizeUnit != 0) {
    return Status::InvalidArgument("block size " + FormatSize(b) +
                                   " must be a multiple of 64KiB between 64KiB and 1GiB");
  }
  if (spec.meta_size < kMinMetaSize || spec.meta_size > kMaxMetaSize) {
    return Status::InvalidArgument("metadata size " + FormatSize(spec.meta_size) +
                                   " must be between 2MiB and 16GiB");
  }
  if (spec.meta_size % kMetaBlock != 0) {
    return Status::InvalidArgument("metadata size " + FormatSize(spec.meta_size) +
                                   " must be a multiple of 4KiB");
  }
  if (spec.data_size < kMinDataSize) {
    return Status::InvalidArgument("data size " + FormatSize(spec.data_size) +
                                   " is below the minimum of " + FormatSize(kMinDataSize));
  }
  if (spec.data_size % b != 0) {
    return Status::InvalidArgument("data size " + FormatSize(spec.data_size) +
                                   " must be a multiple of the block size " + FormatSize(b));
  }
  return Status::Ok();
}

Result<LoopPool> CreateLoopPool(const LoopPoolSpec& spec) {
  THINSNAP_RETURN_IF_ERROR(ValidateLoopPoolSpec(spec));
  THINSNAP_RETURN_IF_ERROR(CheckNameFree(spec.name));

  std::optional<CreatedPath> dir_guard;
  struct stat dir_st;
  if (stat(spec.dir.c_str(), &dir_st) == 0) {
    if (!S_ISDIR(dir_st.st_mode)) return Status::InvalidArgument(spec.dir + " is not a directory");
  } else if (errno == ENOENT) {
    if (mkdir(spec.dir.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir " + spec.dir);
    dir_guard.emplace(spec.dir, /*is_dir=*/true);
  } else {
    return Status::FromErrno(errno, "stat " + spec.dir);
  }
  for (const char* f : {kDescriptorFile, kDataFile, kMetaFile}) {
    if (Exists(spec.dir + "/" + f)) {
      return Status::AlreadyExists(spec.dir + "/" + f +
                                   " already exists; use `pool activate --dir " + spec.dir +
                                   "` or another directory");
    }
  }

  const std::string data_file = spec.dir + "/" + kDataFile;
  const std::string meta_file = spec.dir + "/" + kMetaFile;
  THINSNAP_RETURN_IF_ERROR(CreateSparseFile(data_file, spec.data_size, /*zero_head=*/false));
  CreatedPath data_guard(data_file, false);
  THINSNAP_RETURN_IF_ERROR(CreateSparseFile(meta_file, spec.meta_size, /*zero_head=*/true));
  CreatedPath meta_guard(meta_file, false);

  const PoolDescriptor desc{spec.name, kDataFile, kMetaFile, spec.block_size, kLowWaterBlocks};
  THINSNAP_RETURN_IF_ERROR(WriteDescriptor(spec.dir, desc));
  CreatedPath desc_guard(spec.dir + "/" + kDescriptorFile, false);

  Result<LoopPool> pool =
      Assemble(spec.name, data_file, meta_file, spec.block_size, kLowWaterBlocks);
  if (!pool.ok()) return pool.status();
  if (dir_guard) dir_guard->Keep();
  data_guard.Keep();
  meta_guard.Keep();
  desc_guard.Keep();
  return pool;
}

Result<LoopPool> ActivateLoopPool(const std::string& dir) {
  Result<PoolDescriptor> desc = ReadDescriptor(dir);
  if (!desc.ok()) return desc.status();
  THINSNAP_RETURN_IF_ERROR(dm::ValidateName(desc->name));
  Result<dm::DeviceInfo> info = dm::GetInfo(desc->name);
  if (!info.ok()) return info.status();
  if (info->exists) return Status::AlreadyExists("pool " + desc->name + " is already active");

  const std::string data_file = dir + "/" + desc->data_file;
  const std::string meta_file = dir + "/" + desc->meta_file;
  for (const std::string& file : {data_file, meta_file}) {
    Result<std::optional<std::string>> loop = FindLoopForFile(file);
    if (!loop.ok()) return loop.status();
    // Two loops over one file would be two unsynchronised caches of it.
    if (*loop) {
      return Status::AlreadyExists(file + " is still attached to " + **loop +
                                   "; run `thinsnapctl pool destroy --dir " + dir +
                                   "` to detach it");
    }
  }
  return Assemble(desc->name, data_file, meta_file, desc->block_size, desc->low_water_mark);
}

Result<std::vector<std::string>> DestroyLoopPool(const DestroyOptions& opts) {
  if (!opts.dir && !opts.name) return Status::InvalidArgument("give --dir or --name");
  if (opts.delete_files && !opts.dir) {
    return Status::InvalidArgument("--delete-files needs --dir");
  }
  std::optional<PoolDescriptor> desc;
  std::string name;
  if (opts.dir) {
    Result<PoolDescriptor> read = ReadDescriptor(*opts.dir);
    if (!read.ok()) return read.status();
    desc = *read;
    name = desc->name;
    if (opts.name && *opts.name != name) {
      return Status::InvalidArgument(*opts.dir + " holds pool " + name + ", not " + *opts.name);
    }
  } else {
    name = *opts.name;
  }
  THINSNAP_RETURN_IF_ERROR(dm::ValidateName(name));

  std::vector<std::string> done;
  Result<dm::DeviceInfo> info = dm::GetInfo(name);
  if (!info.ok()) return info.status();
  if (info->exists) {
    Result<dm::ThinPoolTable> table = PoolTable(name);
    if (!table.ok()) return table.status();
    const std::optional<std::string> meta_loop = LoopForDev(table->metadata_dev);
    const std::optional<std::string> data_loop = LoopForDev(table->data_dev);
    if (!meta_loop || !data_loop) {
      return Status::FailedPrecondition(
          "pool " + name + " is not backed by loop devices; remove an LVM pool with lvremove");
    }
    Result<std::vector<std::string>> thins = ThinDevicesOf(info->dev);
    if (!thins.ok()) return thins.status();
    if (!thins->empty() && !opts.force) {
      std::string list;
      for (const std::string& t : *thins) list += (list.empty() ? "" : ", ") + t;
      return Status::FailedPrecondition("pool " + name + " has " + std::to_string(thins->size()) +
                                        " active thin device(s): " + list +
                                        "; stop their users or pass --force to remove them");
    }
    dm::RemoveOptions remove;
    remove.busy_retries = 20;
    remove.retry_delay = std::chrono::milliseconds(50);
    for (const std::string& thin : *thins) {
      THINSNAP_RETURN_IF_ERROR(
          dm::Remove(thin, remove).Annotate("removing thin device " + thin + " (mounted?)"));
      done.push_back("removed thin device " + thin);
    }
    THINSNAP_RETURN_IF_ERROR(dm::Remove(name, remove).Annotate("removing pool " + name));
    done.push_back("removed pool " + name);
    for (const std::string& loop : {*meta_loop, *data_loop}) {
      THINSNAP_RETURN_IF_ERROR(DetachLoop(loop));
      done.push_back("detached " + loop);
    }
  } else if (!desc) {
    return Status::NotFound("no device-mapper device named " + name);
  } else {
    done.push_back("pool " + name + " is not active");
  }

  if (desc) {
    const std::string data_file = *opts.dir + "/" + desc->data_file;
    const std::string meta_file = *opts.dir + "/" + desc->meta_file;
    // Loops left behind by an interrupted teardown would pin the files.
    for (const std::string& file : {data_file, meta_file}) {
      if (!Exists(file)) continue;
      Result<std::optional<std::string>> loop = FindLoopForFile(file);
      if (!loop.ok()) return loop.status();
      if (!*loop) continue;
      THINSNAP_RETURN_IF_ERROR(DetachLoop(**loop));
      done.push_back("detached " + **loop + " (" + file + ")");
    }
    if (opts.delete_files) {
      for (const std::string& file : {data_file, meta_file, *opts.dir + "/" + kDescriptorFile}) {
        if (unlink(file.c_str()) != 0) {
          if (errno == ENOENT) continue;
          return Status::FromErrno(errno, "delete " + file);
        }
        done.push_back("deleted " + file);
      }
      // Only if nothing else lives there.
      if (rmdir(opts.dir->c_str()) == 0) done.push_back("deleted " + *opts.dir);
    }
  }
  return done;
}

std::string LvmDmName(const std::string& vg, const std::string& lv) {
  auto escape = [](const std::string& s) {
    std::string out;
    for (char c : s) out += (c == '-') ? std::string("--") : std::string(1, c);
    return out;
  };
  return escape(vg) + "-" + escape(lv);
}

namespace {

// The outcome of an lvm command as a Status; a non-zero exit becomes Internal
// carrying lvm's own message.
Status CheckLvm(const Result<CommandOutput>& out, const std::string& what) {
  if (!out.ok()) return out.status().Annotate("running " + what);
  if (out->exit_code == 0) return Status::Ok();
  std::string err = out->err;
  while (!err.empty() && std::isspace(static_cast<unsigned char>(err.back()))) err.pop_back();
  return Status::Internal(what + " exited " + std::to_string(out->exit_code) + ": " + err);
}

}  // namespace

Status ExtendLvmPool(const LvmPoolSpec& spec, uint64_t data_by, uint64_t meta_by) {
  if (spec.vg.empty() || spec.name.empty()) {
    return Status::InvalidArgument("--vg and --name name the LVM pool");
  }
  if (data_by == 0 && meta_by == 0) {
    return Status::InvalidArgument("nothing to do: give --data-by and/or --meta-by");
  }
  RunOptions run;
  run.timeout = std::chrono::minutes(5);
  if (!spec.lvm_system_dir.empty())
    run.extra_env.push_back("LVM_SYSTEM_DIR=" + spec.lvm_system_dir);
  std::vector<std::string> argv = {"lvextend"};
  if (!spec.lvm_config.empty()) argv.insert(argv.end(), {"--config", spec.lvm_config});
  if (data_by) argv.insert(argv.end(), {"--size", "+" + std::to_string(data_by) + "b"});
  if (meta_by) argv.insert(argv.end(), {"--poolmetadatasize", "+" + std::to_string(meta_by) + "b"});
  argv.push_back(spec.vg + "/" + spec.name);
  return CheckLvm(RunCommand(argv, run), "lvextend");
}

Result<std::string> CreateLvmPool(const LvmPoolSpec& spec) {
  if (spec.vg.empty()) return Status::InvalidArgument("--vg must not be empty");
  if (spec.name.empty()) return Status::InvalidArgument("--name must not be empty");
  if (spec.size.has_value() == spec.percent.has_value()) {
    return Status::InvalidArgument("give exactly one of --size and --percent");
  }
  if (spec.percent && (*spec.percent < 1 || *spec.percent > 100)) {
    return Status::InvalidArgument("--percent must be between 1 and 100");
  }
  if (spec.size && *spec.size < kMinDataSize) {
    return Status::InvalidArgument("size " + FormatSize(*spec.size) + " is below the minimum of " +
                                   FormatSize(kMinDataSize));
  }
  const std::string dm_name = LvmDmName(spec.vg, spec.name);
  THINSNAP_RETURN_IF_ERROR(CheckNameFree(dm_name));

  RunOptions run;
  run.timeout = std::chrono::minutes(5);
  if (!spec.lvm_system_dir.empty())
    run.extra_env.push_back("LVM_SYSTEM_DIR=" + spec.lvm_system_dir);
  auto lvm = [&](std::vector<std::string> argv) {
    if (!spec.lvm_config.empty()) {
      argv.insert(argv.begin() + 1, {"--config", spec.lvm_config});
    }
    return RunCommand(argv, run);
  };

  Result<CommandOutput> vgs = lvm({"vgs", "--noheadings", "-o", "vg_name", spec.vg});
  if (!vgs.ok()) return vgs.status().Annotate("running vgs");
  if (Status st = CheckLvm(vgs, "vgs"); !st.ok()) {
    return Status::NotFound("volume group " + spec.vg + " not found (" + st.message() + ")");
  }
  // `lvcreate --type thin-pool` rejects --errorwhenfull in lvm2 2.03, so the
  // policy is switched right after creation, and the pool removed again if
  // that fails: a pool that queues I/O when full hangs its users.
  std::vector<std::string> argv = {"lvcreate", "--type", "thin-pool", "--yes", "--name", spec.name};
  if (spec.size) {
    argv.insert(argv.end(), {"--size", std::to_string(*spec.size) + "b"});
  } else {
    argv.insert(argv.end(), {"--extents", std::to_string(*spec.percent) + "%FREE"});
  }
  argv.push_back(spec.vg);
  THINSNAP_RETURN_IF_ERROR(CheckLvm(lvm(argv), "lvcreate"));
  const std::string lv = spec.vg + "/" + spec.name;
  Status policy = CheckLvm(lvm({"lvchange", "--errorwhenfull", "y", lv}), "lvchange");
  if (!policy.ok()) {
    (void)CheckLvm(lvm({"lvremove", "--yes", lv}), "lvremove");
    return policy.Annotate("setting error_if_no_space on " + lv + " (pool removed again)");
  }
  Result<dm::DeviceInfo> info = dm::GetInfo(dm_name);
  if (!info.ok()) return info.status();
  if (!info->exists) {
    return Status::Internal("lvcreate succeeded but " + dm_name + " is not active");
  }
  return dm_name;
}

Result<std::vector<std::string>> ExtendLoopPool(const std::string& name, const ExtendSpec& spec) {
  auto before = dm::GetLoopPoolSize(name);
  if (!before.ok()) return before.status();
  const uint64_t data = spec.data_to ? spec.data_to : before->data_bytes + spec.data_by;
  const uint64_t meta = spec.meta_to ? spec.meta_to : before->meta_bytes + spec.meta_by;
  if (data < before->data_bytes || meta < before->meta_bytes) {
    return Status::InvalidArgument("pools only grow: data is " + FormatSize(before->data_bytes) +
                                   ", metadata " + FormatSize(before->meta_bytes));
  }
  if (meta > kMaxMetaSize) {
    return Status::InvalidArgument("metadata size " + FormatSize(meta) + " is above dm-thin's " +
                                   FormatSize(kMaxMetaSize));
  }
  if (data == before->data_bytes && meta == before->meta_bytes) {
    return Status::InvalidArgument(
        "nothing to do: give a larger --data-size/--meta-size, or "
        "--data-by/--meta-by");
  }
  auto after = dm::GrowLoopPool(name, data, meta);
  if (!after.ok()) return after.status();
  return std::vector<std::string>{
      "pool " + name + " extended",
      "  data:     " + after->data_file + ", " + FormatSize(before->data_bytes) + " -> " +
          FormatSize(after->data_bytes),
      "  metadata: " + after->meta_file + ", " + FormatSize(before->meta_bytes) + " -> " +
          FormatSize(after->meta_bytes)};
}

Status PrintPoolStatus(const std::string& name, bool json) {
  THINSNAP_RETURN_IF_ERROR(dm::ValidateName(name));
  Result<dm::DeviceInfo> info = dm::GetInfo(name);
  if (!info.ok()) return info.status();
  if (!info->exists) return Status::NotFound("no device-mapper device named " + name);
  Result<dm::ThinPoolTable> table = PoolTable(name);
  if (!table.ok()) return table.status();
  Result<dm::Table> lines = dm::GetStatus(name);
  if (!lines.ok()) return lines.status().Annotate("reading the status of " + name);
  if (lines->size() != 1) return Status::Internal("pool " + name + " has several targets");
  Result<dm::ThinPoolStatus> st = dm::ParseThinPoolStatus((*lines)[0].ToString());
  if (!st.ok()) return st.status();

  const uint64_t block = table->block_sectors * kSector;
  if (st->failed) {
    if (json) {
      PrintJson(toml::table{{"name", name}, {"failed", true}});
    } else {
      std::cout << "pool:  " << name << "\nmode:  Fail (the kernel failed the pool)\n";
    }
    return Status::Ok();
  }
  if (json) {
    toml::table out{
        {"name", name},
        {"failed", false},
        {"mode", ModeName(st->mode)},
        {"transaction_id", JsonInt(st->transaction_id)},
        {"block_size", JsonInt(block)},
        {"data", toml::table{{"used_blocks", JsonInt(st->data_used_blocks)},
                             {"total_blocks", JsonInt(st->data_total_blocks)},
                             {"used_bytes", JsonInt(st->data_used_blocks * block)},
                             {"total_bytes", JsonInt(st->data_total_blocks * block)}}},
        {"metadata", toml::table{{"used_blocks", JsonInt(st->meta_used_blocks)},
                                 {"total_blocks", JsonInt(st->meta_total_blocks)},
                                 {"used_bytes", JsonInt(st->meta_used_blocks * kMetaBlock)},
                                 {"total_bytes", JsonInt(st->meta_total_blocks * kMetaBlock)}}},
        {"no_space_policy", st->error_if_no_space ? "error_if_no_space" : "queue_if_no_space"},
        {"discard", DiscardName(st->discard)},
        {"needs_check", st->needs_check},
    };
    if (st->held_metadata_root) {
      out.insert("held_metadata_root", JsonInt(*st->held_metadata_root));
    }
    PrintJson(out);
    return Status::Ok();
  }
  std::cout << "pool:               " << name << "\n"
            << "mode:               " << ModeName(st->mode) << "\n"
            << "transaction id:     " << st->transaction_id << "\n"
            << "block size:         " << FormatSize(block) << "\n"
            << "data:               " << st->data_used_blocks << "/" << st->data_total_blocks
            << " blocks, " << st->data_used_blocks * block << "/" << st->data_total_blocks * block
            << " bytes (" << Percent(st->data_used_blocks, st->data_total_blocks) << ")\n"
            << "metadata:           " << st->meta_used_blocks << "/" << st->meta_total_blocks
            << " blocks, " << st->meta_used_blocks * kMetaBlock << "/"
            << st->meta_total_blocks * kMetaBlock << " bytes ("
            << Percent(st->meta_used_blocks, st->meta_total_blocks) << ")\n"
            << "no-space policy:    "
            << (st->error_if_no_space ? "error_if_no_space" : "queue_if_no_space") << "\n"
            << "discard:            " << DiscardName(st->discard) << "\n"
            << "needs check:        " << (st->needs_check ? "yes" : "no") << "\n"
            << "held metadata root: "
            << (st->held_metadata_root ? std::to_string(*st->held_metadata_root) : "-") << "\n";
  return Status::Ok();
}

}  // namespace thinsnap::ctl

// Pool administration: create, re-activate, inspect and destroy thin pools.
//
// Loop-backed pools live in a directory (data.img, meta.img, pool.toml) and
// are assembled here with loop ioctls and device-mapper calls. LVM pools are
// made by lvcreate. Every operation that fails leaves the system as it found
// it: whatever was created so far is rolled back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace thinsnap::ctl {

inline constexpr const char* kDefaultPoolName = "thinsnap-pool";

struct LoopPoolSpec {
  std::string dir;
  std::string name = kDefaultPoolName;
  uint64_t data_size = 0;
  uint64_t meta_size = 0;
  uint64_t block_size = 64 * 1024;
};

// Bounds a LoopPoolSpec must meet; checked before anything is created.
inline constexpr uint64_t kMinDataSize = 16ull << 20;
inline constexpr uint64_t kMinMetaSize = 2ull << 20;     // dm-thin's minimum
inline constexpr uint64_t kMaxMetaSize = 16ull << 30;    // dm-thin uses at most ~16 GiB
inline constexpr uint64_t kBlockSizeUnit = 64ull << 10;  // dm-thin block granularity
inline constexpr uint64_t kMaxBlockSize = 1ull << 30;
// Free data blocks below which the kernel raises a dm event.
inline constexpr uint64_t kLowWaterBlocks = 32768;

// What a successful create/activate set up, for the caller to report.
struct LoopPool {
  std::string name;
  std::string data_file, meta_file;
  std::string data_loop, meta_loop;
  uint64_t data_size = 0, meta_size = 0, block_size = 0;
};

Status ValidateLoopPoolSpec(const LoopPoolSpec& spec);

// Creates DIR (if missing), sparse DIR/data.img and DIR/meta.img, attaches
// them to loop devices, writes DIR/pool.toml and creates the pool
// `0 <data sectors> thin-pool <meta> <data> <block> 32768 2 skip_block_zeroing
// error_if_no_space`. AlreadyExists if the name is taken or DIR already holds
// a pool.
Result<LoopPool> CreateLoopPool(const LoopPoolSpec& spec);

// Re-attaches the loops of the pool described by DIR/pool.toml and recreates
// the pool on the existing metadata (after a reboot, or a destroy that kept
// the files). AlreadyExists if the pool is active.
Result<LoopPool> ActivateLoopPool(const std::string& dir);

struct DestroyOptions {
  std::optional<std::string> dir;   // identifies the pool by its descriptor
  std::optional<std::string> name;  // or by its device-mapper name
  bool force = false;               // remove the pool's thin devices first
  bool delete_files = false;        // delete data.img, meta.img, pool.toml (needs dir)
};
// Tears down a loop-backed pool: thin devices (only with force; otherwise
// FailedPrecondition while any exist), the pool, then its loop devices.
// Refuses pools not backed by loop devices (LVM pools belong to lvremove).
// Returns a line per action taken, for the caller to print.
Result<std::vector<std::string>> DestroyLoopPool(const DestroyOptions& opts);

struct LvmPoolSpec {
  std::string vg;
  std::string name = kDefaultPoolName;  // the LV name
  std::optional<uint64_t> size;         // bytes; exactly one of size/percent
  std::optional<unsigned> percent;      // of the VG's free space, 1..100
  // Passed as `--config` to every lvm command, and as LVM_SYSTEM_DIR, when set.
  std::string lvm_config;
  std::string lvm_system_dir;
};
// The --config text that makes lvm work without udev (as in the test VM).
inline constexpr const char* kLvmNoUdevConfig =
    "devices { obtain_device_list_from_udev=0 } "
    "activation { udev_sync=0 udev_rules=0 monitoring=0 }";

// `lvcreate --type thin-pool --errorwhenfull y`; returns the pool's
// device-mapper name (VG-LV with '-' doubled). NotFound if the VG is missing.
Result<std::string> CreateLvmPool(const LvmPoolSpec& spec);

// The device-mapper name LVM gives VG/LV.
std::string LvmDmName(const std::string& vg, const std::string& lv);

// How much a pool should grow: either to a size or by an amount. Zero
// fields are left alone.
struct ExtendSpec {
  uint64_t data_to = 0, data_by = 0;
  uint64_t meta_to = 0, meta_by = 0;
};
// Grows loop pool `name` online (dm/pool_resize.h) and returns a line per
// device, for the caller to print. FailedPrecondition for pools not on loop
// devices; InvalidArgument for sizes it cannot reach (below the current one,
// data not a multiple of the block size, metadata above dm-thin's 16 GiB).
Result<std::vector<std::string>> ExtendLoopPool(const std::string& name, const ExtendSpec& spec);

// `lvextend --size +BYTES` of VG/LV, plus `--poolmetadatasize +BYTES`.
Status ExtendLvmPool(const LvmPoolSpec& pool, uint64_t data_by, uint64_t meta_by);

// Prints the pool's status, as text or JSON.
Status PrintPoolStatus(const std::string& name, bool json);

}  // namespace thinsnap::ctl

// thinsnapctl: sets up and inspects thin pools, and talks to thinsnapd.
//
//   thinsnapctl pool create --loop --dir DIR --data-size 4G --meta-size 128M
//   thinsnapctl pool create --lvm --vg VG --size 10G
//   thinsnapctl pool status [--name NAME] [--json]
//   thinsnapctl pool activate --dir DIR
//   thinsnapctl pool destroy (--dir DIR | --name NAME) [--force] [--delete-files]
//   thinsnapctl [--socket PATH] ls|tree|info|usage|prepare|view|commit|mounts|rm|cleanup
//   thinsnapctl check [--repair] [--json] --root DIR --pool NAME; thinsnapctl gc ... (check.h)
//   thinsnapctl --version
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "check.h"
#include "client.h"
#include "exact_usage.h"
#include "pool_admin.h"
#include "size.h"

namespace thinsnap::ctl {
namespace {

int Fail(const Status& st) {
  std::cerr << "thinsnapctl: " << st.ToString() << "\n";
  return 1;
}

// CLI11 validator for size strings, so bad sizes are reported like any other
// bad option, before anything runs.
struct SizeValidator : CLI::Validator {
  SizeValidator() : CLI::Validator("SIZE") {
    func_ = [](const std::string& text) -> std::string {
      Result<uint64_t> v = ParseSize(text);
      return v.ok() ? std::string() : v.status().message();
    };
  }
};

uint64_t MustParseSize(const std::string& text) {
  // Already checked by SizeValidator.
  return ParseSize(text).value();
}

Result<Labels> ParseLabels(const std::vector<std::string>& items) {
  Labels labels;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("label '" + item + "' is not KEY=VALUE");
    }
    labels[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return labels;
}

void PrintLoopPool(const LoopPool& pool, const char* verb) {
  std::cout << verb << " pool " << pool.name << " (/dev/mapper/" << pool.name << ")\n"
            << "  data:     " << pool.data_file << " on " << pool.data_loop << ", "
            << FormatSize(pool.data_size) << "\n"
            << "  metadata: " << pool.meta_file << " on " << pool.meta_loop << ", "
            << FormatSize(pool.meta_size) << "\n"
            << "  block size " << FormatSize(pool.block_size) << "\n";
}

int Main(int argc, char** argv) {
  CLI::App app{"thinsnapctl: thin-pool setup and thinsnap snapshot client"};
  app.set_version_flag("--version", std::string("thinsnapctl ") + THINSNAP_VERSION);
  app.require_subcommand(1);
  SizeValidator size_check;

  ClientOptions client;
  const char* env_socket = std::getenv("THINSNAP_SOCKET");
  if (env_socket != nullptr && *env_socket != '\0') client.socket = env_socket;
  int timeout_s = 60;
  app.add_option("--socket", client.socket, "thinsnapd socket (env THINSNAP_SOCKET)")
      ->capture_default_str();
  app.add_option("--snapshotter", client.snapshotter, "snapshotter name sent in requests")
      ->capture_default_str();
  app.add_option("--namespace", client.ns, "containerd namespace header to send");
  app.add_option("--timeout", timeout_s, "seconds to wait for each call")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  // --- pool ---
  CLI::App* pool = app.add_subcommand("pool", "create, activate, inspect and destroy pools");
  pool->require_subcommand(1);

  CLI::App* create = pool->add_subcommand("create", "create a thin pool");
  bool use_loop = false, use_lvm = false;
  LoopPoolSpec loop_spec;
  std::string data_size, meta_size, block_size = "64KiB";
  LvmPoolSpec lvm_spec;
  std::string lvm_size;
  unsigned lvm_percent = 0;
  bool lvm_no_udev = false;
  auto* loop_flag = create->add_flag("--loop", use_loop, "back the pool by files in --dir");
  auto* lvm_flag = create->add_flag("--lvm", use_lvm, "create an LVM thin pool in --vg");
  loop_flag->excludes(lvm_flag);
  create->add_option("--dir", loop_spec.dir, "[loop] directory for data.img, meta.img, pool.toml");
  create->add_option("--data-size", data_size, "[loop] data file size")->check(size_check);
  create->add_option("--meta-size", meta_size, "[loop] metadata file size")->check(size_check);
  create->add_option("--block-size", block_size, "[loop] data block size")
      ->check(size_check)
      ->capture_default_str();
  std::string pool_name = kDefaultPoolName;
  create->add_option("--name", pool_name, "pool name (loop: dm name; lvm: LV name)")
      ->capture_default_str();
  create->add_option("--vg", lvm_spec.vg, "[lvm] volume group");
  auto* size_opt = create->add_option("--size", lvm_size, "[lvm] pool size")->check(size_check);
  auto* pct_opt =
      create->add_option("--percent", lvm_percent, "[lvm] percent of the VG's free space")
          ->check(CLI::Range(1, 100));
  size_opt->excludes(pct_opt);
  create->add_option("--lvm-config", lvm_spec.lvm_config, "[lvm] passed as --config to lvm");
  create->add_flag("--lvm-no-udev", lvm_no_udev,
                   "[lvm] run lvm without udev (for hosts and VMs that have none)");
  create->add_option("--lvm-system-dir", lvm_spec.lvm_system_dir,
                     "[lvm] LVM_SYSTEM_DIR for lvm (a writable copy of /etc/lvm)");
  create->callback([&] {
    if (use_loop == use_lvm) throw CLI::ValidationError("pool create", "give --loop or --lvm");
    if (use_loop) {
      for (const auto& [flag, value] :
           {std::pair{"--dir", loop_spec.dir}, std::pair{"--data-size", data_size},
            std::pair{"--meta-size", meta_size}}) {
        if (value.empty()) throw CLI::RequiredError(std::string(flag) + " (with --loop)");
      }
      loop_spec.name = pool_name;
      loop_spec.data_size = MustParseSize(data_size);
      loop_spec.meta_size = MustParseSize(meta_size);
      loop_spec.block_size = MustParseSize(block_size);
    } else {
      if (lvm_spec.vg.empty()) throw CLI::RequiredError("--vg (with --lvm)");
      if (lvm_size.empty() && lvm_percent == 0) {
        throw CLI::RequiredError("--size or --percent (with --lvm)");
      }
      lvm_spec.name = pool_name;
      if (!lvm_size.empty()) lvm_spec.size = MustParseSize(lvm_size);
      if (lvm_percent != 0) lvm_spec.percent = lvm_percent;
      if (lvm_no_udev) {
        if (!lvm_spec.lvm_config.empty()) lvm_spec.lvm_config += " ";
        lvm_spec.lvm_config += kLvmNoUdevConfig;
      }
    }
  });

  CLI::App* activate = pool->add_subcommand("activate", "re-create a loop pool from its files");
  std::string activate_dir;
  activate->add_option("--dir", activate_dir, "the pool's directory")->required();

  CLI::App* destroy = pool->add_subcommand("destroy", "tear down a loop pool");
  DestroyOptions destroy_opts;
  std::string destroy_dir, destroy_name;
  auto* ddir = destroy->add_option("--dir", destroy_dir, "the pool's directory");
  auto* dname = destroy->add_option("--name", destroy_name, "the pool's device-mapper name");
  destroy->add_flag("--force", destroy_opts.force, "remove the pool's thin devices first");
  destroy->add_flag("--delete-files", destroy_opts.delete_files,
                    "delete data.img, meta.img and pool.toml (needs --dir)");
  destroy->callback([&] {
    if (ddir->count() == 0 && dname->count() == 0) throw CLI::RequiredError("--dir or --name");
  });

  CLI::App* extend = pool->add_subcommand("extend", "grow a pool online (loop or LVM)");
  std::string extend_name = kDefaultPoolName;
  std::string data_to, data_by, meta_to, meta_by;
  bool extend_lvm = false;
  LvmPoolSpec extend_lvm_spec;
  extend->add_option("--name", extend_name, "pool name (loop: dm name; lvm: LV name)")
      ->capture_default_str();
  auto* data_to_opt =
      extend->add_option("--data-size", data_to, "[loop] new data size")->check(size_check);
  extend->add_option("--data-by", data_by, "grow the data by this much")
      ->check(size_check)
      ->excludes(data_to_opt);
  auto* meta_to_opt =
      extend->add_option("--meta-size", meta_to, "[loop] new metadata size")->check(size_check);
  extend->add_option("--meta-by", meta_by, "grow the metadata by this much")
      ->check(size_check)
      ->excludes(meta_to_opt);
  extend->add_flag("--lvm", extend_lvm, "an LVM thin pool: run lvextend on --vg/--name");
  extend->add_option("--vg", extend_lvm_spec.vg, "[lvm] volume group");
  extend->add_option("--lvm-config", extend_lvm_spec.lvm_config, "[lvm] passed as --config");
  extend->add_option("--lvm-system-dir", extend_lvm_spec.lvm_system_dir,
                     "[lvm] LVM_SYSTEM_DIR for lvm");
  extend->callback([&] {
    if (data_to.empty() && data_by.empty() && meta_to.empty() && meta_by.empty()) {
      throw CLI::RequiredError("--data-size, --data-by, --meta-size or --meta-by");
    }
    if (extend_lvm && (!data_to.empty() || !meta_to.empty())) {
      throw CLI::ValidationError("pool extend", "with --lvm give --data-by/--meta-by");
    }
    if (extend_lvm && extend_lvm_spec.vg.empty()) throw CLI::RequiredError("--vg (with --lvm)");
  });

  CLI::App* status = pool->add_subcommand("status", "show a pool's usage and state");
  std::string status_name = kDefaultPoolName;
  bool status_json = false;
  status->add_option("--name", status_name, "device-mapper name of the pool")
      ->capture_default_str();
  status->add_flag("--json", status_json, "print JSON");

  // --- client commands ---
  Labels labels;
  std::vector<std::string> label_items;
  std::string key, parent, name;
  std::optional<std::string> usage_key;

  CLI::App* ls = app.add_subcommand("ls", "list snapshots");
  ls->add_flag("--json", client.json, "print JSON");
  CLI::App* tree = app.add_subcommand("tree", "show snapshots as a parent/child tree");
  CLI::App* info = app.add_subcommand("info", "show one snapshot");
  info->add_option("KEY", key, "snapshot key")->required();
  info->add_flag("--json", client.json, "print JSON");
  CLI::App* usage = app.add_subcommand("usage", "disk usage of one or all snapshots");
  usage->add_option("KEY", usage_key, "snapshot key (default: every snapshot)");
  usage->add_flag("--json", client.json, "print JSON");
  bool usage_exact = false;
  std::string usage_root, usage_pool;
  auto* exact_flag = usage->add_flag(
      "--exact", usage_exact, "exclusive bytes from the pool's metadata (needs --root, --pool)");
  usage->add_option("--root", usage_root, "[exact] thinsnapd's root_dir")->needs(exact_flag);
  usage->add_option("--pool", usage_pool, "[exact] device-mapper name of the pool")
      ->needs(exact_flag);
  usage->callback([&] {
    if (usage_exact && (usage_root.empty() || usage_pool.empty())) {
      throw CLI::RequiredError("--root and --pool (with --exact)");
    }
  });
  CLI::App* prepare = app.add_subcommand("prepare", "create an active snapshot; prints mounts");
  prepare->add_option("KEY", key, "key of the new snapshot")->required();
  prepare->add_option("PARENT", parent, "committed snapshot to start from (default: empty)");
  CLI::App* view = app.add_subcommand("view", "create a read-only view; prints mounts");
  view->add_option("KEY", key, "key of the new view")->required();
  view->add_option("PARENT", parent, "committed snapshot to show (default: empty)");
  CLI::App* commit = app.add_subcommand("commit", "commit active snapshot KEY as NAME");
  commit->add_option("NAME", name, "name of the committed snapshot")->required();
  commit->add_option("KEY", key, "active snapshot to commit")->required();
  for (CLI::App* cmd : {prepare, view, commit}) {
    cmd->add_option("--label", label_items, "KEY=VALUE label (repeatable)");
  }
  for (CLI::App* cmd : {prepare, view}) cmd->add_flag("--json", client.json, "print JSON");
  CLI::App* mounts = app.add_subcommand("mounts", "print the mounts of a snapshot");
  mounts->add_option("KEY", key, "snapshot key")->required();
  mounts->add_flag("--json", client.json, "print JSON");
  CLI::App* rm = app.add_subcommand("rm", "remove a snapshot");
  rm->add_option("KEY", key, "snapshot key (committed snapshots by their NAME)")->required();
  CLI::App* cleanup = app.add_subcommand("cleanup", "ask the daemon to reclaim space");
  CheckCommands check(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Usage errors read like every other error: `thinsnapctl: <Code>: ...`.
    std::cerr << "thinsnapctl: InvalidArgument: " << e.what() << " (see --help)\n";
    return 2;
  }
  client.timeout = std::chrono::seconds(timeout_s);

  if (*create) {
    if (use_loop) {
      Result<LoopPool> created = CreateLoopPool(loop_spec);
      if (!created.ok()) return Fail(created.status());
      PrintLoopPool(*created, "created");
      return 0;
    }
    Result<std::string> created = CreateLvmPool(lvm_spec);
    if (!created.ok()) return Fail(created.status());
    std::cout << *created << "\n";
    return 0;
  }
  if (*activate) {
    Result<LoopPool> activated = ActivateLoopPool(activate_dir);
    if (!activated.ok()) return Fail(activated.status());
    PrintLoopPool(*activated, "activated");
    return 0;
  }
  if (*destroy) {
    if (ddir->count() > 0) destroy_opts.dir = destroy_dir;
    if (dname->count() > 0) destroy_opts.name = destroy_name;
    Result<std::vector<std::string>> done = DestroyLoopPool(destroy_opts);
    if (!done.ok()) return Fail(done.status());
    for (const std::string& line : *done) std::cout << line << "\n";
    return 0;
  }
  if (*extend) {
    auto size_of = [](const std::string& s) { return s.empty() ? uint64_t{0} : MustParseSize(s); };
    if (extend_lvm) {
      extend_lvm_spec.name = extend_name;
      Status st = ExtendLvmPool(extend_lvm_spec, size_of(data_by), size_of(meta_by));
      if (!st.ok()) return Fail(st);
      std::cout << "pool " << extend_lvm_spec.vg << "/" << extend_name << " extended\n";
      return 0;
    }
    ExtendSpec spec{size_of(data_to), size_of(data_by), size_of(meta_to), size_of(meta_by)};
    Result<std::vector<std::string>> done = ExtendLoopPool(extend_name, spec);
    if (!done.ok()) return Fail(done.status());
    for (const std::string& line : *done) std::cout << line << "\n";
    return 0;
  }
  if (*status) {
    Status st = PrintPoolStatus(status_name, status_json);
    return st.ok() ? 0 : Fail(st);
  }
  if (check.chosen()) return check.Run();

  Result<Labels> parsed_labels = ParseLabels(label_items);
  if (!parsed_labels.ok()) return Fail(parsed_labels.status());
  labels = *parsed_labels;
  if (*ls) return List(client);
  if (*tree) return Tree(client);
  if (*info) return Info(client, key);
  if (*usage && usage_exact) return ExactUsage(usage_root, usage_pool, usage_key, client.json);
  if (*usage) return Usage(client, usage_key);
  if (*prepare) return Prepare(client, key, parent, labels);
  if (*view) return View(client, key, parent, labels);
  if (*commit) return Commit(client, name, key, labels);
  if (*mounts) return Mounts(client, key);
  if (*rm) return Remove(client, key);
  if (*cleanup) return Cleanup(client);
  return Fail(Status::Internal("no command"));
}

}  // namespace
}  // namespace thinsnap::ctl

int main(int argc, char** argv) { return thinsnap::ctl::Main(argc, argv); }

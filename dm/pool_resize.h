// pool_resize.h: growing a loop-backed thin pool online.
//
// A loop pool's data and metadata devices are loop devices over files. To
// grow it: extend the files (sparsely), make each loop device take its
// file's new size (LOOP_SET_CAPACITY), and reload the pool's table with the
// new data length; the kernel resizes the pool's data and metadata spaces in
// the resume, while thin devices stay active (their I/O waits for the short
// suspend).
//
// LVM pools are not handled here: `lvextend` (or LVM's own autoextend)
// grows them.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace thinsnap::dm {

struct LoopPoolSize {
  std::string data_file, meta_file;  // the loop devices' backing files
  uint64_t data_bytes = 0;           // the pool's data length (its table)
  uint64_t meta_bytes = 0;           // the metadata device's size
};

// The backing files and sizes of loop-backed pool `pool`. FailedPrecondition
// if its data or metadata device is not a loop device.
Result<LoopPoolSize> GetLoopPoolSize(const std::string& pool);

// Grows `pool` to `data_bytes` of data and `meta_bytes` of metadata; a size
// at or below the current one leaves that part alone (pools never shrink).
// `data_bytes` must be a multiple of the pool's block size. Returns the sizes
// afterwards.
Result<LoopPoolSize> GrowLoopPool(const std::string& pool, uint64_t data_bytes,
                                  uint64_t meta_bytes);

}  // namespace thinsnap::dm

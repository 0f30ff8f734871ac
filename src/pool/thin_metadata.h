// Reading which virtual blocks a thin device maps, straight from the pool's
// metadata, in-process.
//
// Two paths need it and must not fork:
// - A layer's Commit trims the free blocks of its filesystem. Almost all of
//   them are not mapped by its thin device (never written, or already
//   unmapped by its parent's own trim), and a BLKDISCARD of an unmapped range
//   still costs a round trip through the pool's worker. Knowing the device's
//   mappings lets the trim discard only the free ranges that hold some.
// - The reclaimer discards what a removed device wrote itself (its own
//   ranges) before deleting it, so the data device gets the blocks back.
// thin_dump would answer both, as a subprocess; a device's trees are a few
// metadata blocks.
//
// The format is dm-thin's (drivers/md/dm-thin-metadata.c and
// persistent-data/dm-btree*.c): 4 KiB little-endian blocks; the superblock
// in block 0 names the roots of a two-level btree, thin id -> (virtual block
// -> data block << 24 | time), and of the device details btree, thin id ->
// (mapped blocks, transaction, creation time, snapshot time). A device's own
// mappings are those stamped at or after its creation time: every create_snap
// advances the pool's time, so inherited mappings carry an earlier one.
//
// The superblock and every btree node read are checked: checksum (crc32c),
// magic, the node's own block number, node kind, entry counts, value size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "pool/byte_range.h"
#include "pool/pool.h"

namespace thinsnap {

enum class MetadataSource {
  // The metadata device of a live pool, as of its last commit, without a
  // metadata snapshot (reserving and releasing one costs the pool two
  // commits). dm-thin never overwrites a block the committed superblock
  // reaches until it has committed again, so the reader re-reads the
  // superblock after its walk: unchanged, the walk saw one consistent commit;
  // changed, it walks again (a few times, then Unavailable). Mappings made
  // since the last commit are not seen: a caller that needs a device's
  // writes flushes the device first (a flush makes dm-thin commit).
  kLive,
  // The metadata device of a live pool, read through the metadata snapshot
  // it holds (reserve_metadata_snap).
  kHeldSnapshot,
  // A metadata file nothing writes to, e.g. thin_restore's output.
  kOfflineFile,
};
// kLive and kHeldSnapshot read with O_DIRECT: the kernel writes the metadata
// device around the page cache.

// The byte ranges of the virtual blocks (of `block_bytes`) that thin device
// `id` maps, in order, touching ranges merged. NotFound if the device is not
// in the metadata; FailedPrecondition if kHeldSnapshot and none is held;
// Unavailable if kLive and the pool kept committing under the reader;
// Internal if the metadata is not what the format says.
Result<std::vector<ByteRange>> ReadThinMappings(const std::string& metadata_path,
                                                MetadataSource source, ThinId id,
                                                uint64_t block_bytes);

// For each of `ids`, in order, the byte ranges of the mappings it made itself
// (stamped at or after its creation time), touching ranges merged; NotFound
// for an id not in the metadata. A device made with create_thin owns all it
// maps. The outer errors are ReadThinMappings's; kLive retries per id.
Result<std::vector<Result<std::vector<ByteRange>>>> ReadOwnRanges(const std::string& metadata_path,
                                                                  MetadataSource source,
                                                                  const std::vector<ThinId>& ids,
                                                                  uint64_t block_bytes);

// The parts of `ranges` that lie within `within`; both sorted by offset and
// free of overlaps, as is the result.
std::vector<ByteRange> IntersectRanges(const std::vector<ByteRange>& ranges,
                                       const std::vector<ByteRange>& within);

}  // namespace thinsnap

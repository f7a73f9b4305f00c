"""Rank of every true match of a block of queries, without sorting the gallery.

The evaluation rule (torchreid's, and the one every Re-ID paper reports): for a query, gallery
entries with the query's identity *and* camera are ignored ("junk"); the remaining entries are
ordered by distance, ties broken by gallery index (a stable argsort); a *match* is a remaining
entry with the query's identity. CMC, AP and INP depend only on the 0-based positions
("ranks") of the matches in that ordering, and the rank of a match is simply the number of
valid entries that precede it — so no row is ever sorted.

How a block is ranked, for ``B`` queries and ``G`` gallery entries:

1. The gallery entries of each query's identity come from :class:`GalleryIndex` (a CSR of the
   gallery grouped by identity), so matches and junk are found without a ``B × G`` label compare.
2. Match distances are sorted per query by (distance, gallery index): tiny ``B × M`` rows.
3. Only entries no farther than the query's worst match can precede a match. One compare +
   ``nonzero`` pass finds these *candidates*; with real features they are a few percent of the
   gallery, for structureless features all of it (still exact, just slower).
4. Each candidate gets the number of matches that precede it from one flat ``searchsorted`` of
   int64 keys over the whole block. For float32 distances the key is
   ``(row, order-preserving float bits, gallery index)``: its order *is* the ranking order,
   ties included, so no tie needs special care. float64 distances are keyed by their float32
   rounding and the entries whose key equals a match key are resolved with the original values.
   For float32 on the CPU, steps 3-4 and the counting run fused, a few rows at a time while those
   rows are in cache, on a pool of threads (:func:`_cpu_candidate_counts`): with torch's full-size
   passes (compare, ``nonzero``, gathers, key encoding, ``searchsorted``, ``bincount``) each one
   re-read the block from memory and several ran on one core: ~0.22x the GEMM's time on one thread
   at Market size, more on two. Fused: ~0.15-0.17x on one thread, and it splits over the threads.
   The fused pass also replaces most of the binary search (~20 ns a candidate) by a table: a row's
   value range is cut into cells, and a candidate in a cell without a match of its row gets its slot
   from the cell (:func:`_cell_table`); only the few percent in a match's cell are searched. ~0.12x.
5. Junk entries (same identity and camera) are candidates too; their counts are subtracted,
   computed on the small per-identity set instead of testing every candidate's labels.
6. A histogram of those counts, cumulated, gives each match's rank.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["GalleryIndex", "MatchRanks", "fused_cpu_path", "match_ranks", "max_block_rows"]

# Tied candidates are compared against all of their query's matches at once; this bounds the
# size of that (candidates × matches) comparison.
_TIE_BLOCK_ELEMENTS = 1 << 24

# Distances per task of the fused CPU pass (8 MiB of float32): small enough to stay in the last-level
# cache between its passes, large enough that each task's few dozen numpy calls cost little.
_TASK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class GalleryIndex:
    """Gallery labels plus the gallery grouped by identity (ascending gallery index within a group)."""

    pids: torch.Tensor
    camids: torch.Tensor
    order: torch.Tensor
    group_pids: torch.Tensor
    group_starts: torch.Tensor
    group_sizes: torch.Tensor

    @classmethod
    def build(cls, pids: torch.Tensor, camids: torch.Tensor) -> GalleryIndex:
        order = torch.argsort(pids, stable=True)
        group_pids, group_sizes = torch.unique_consecutive(pids[order], return_counts=True)
        group_starts = torch.cumsum(group_sizes, 0) - group_sizes
        return cls(pids, camids, order, group_pids, group_starts, group_sizes)

    def same_identity(self, q_pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gallery indices with each query's identity, padded: ``(indices (B, S), present (B, S))``."""
        slot = torch.searchsorted(self.group_pids, q_pids).clamp(max=self.group_pids.numel() - 1)
        found = self.group_pids[slot] == q_pids
        sizes = torch.where(found, self.group_sizes[slot], torch.zeros_like(q_pids))
        width = max(int(sizes.max()), 1)
        offsets = torch.arange(width, device=q_pids.device)
        present = offsets < sizes[:, None]
        positions = (self.group_starts[slot][:, None] + offsets).clamp(max=self.order.numel() - 1)
        indices = torch.where(present, self.order[positions], torch.zeros_like(positions))
        return indices, present


@dataclass(frozen=True)
class MatchRanks:
    """Per query of a block: ``ranks[q, i]`` is the 0-based position of its i-th match among valid
    gallery entries (matches in ranking order); entries ``i >= num_matches[q]`` are meaningless."""

    ranks: torch.Tensor
    num_matches: torch.Tensor


def _monotone_bits(values: torch.Tensor) -> torch.Tensor:
    """int64 in [0, 2**32) ordered like the float32 values (-0.0 and +0.0 equal)."""
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats: reverse their magnitude order
    return bits.to(torch.int64) + (1 << 31)


class _KeyCodec:
    """Encodes entries of a block as sortable int64 keys for one flat ``searchsorted``.

    Exact mode (float32 or narrower distances): ``(row, value bits, gallery index)`` — the key order
    *is* the ranking order, so the number of smaller match keys is the answer. Otherwise (float64):
    ``(row, float32 bits)`` — order-preserving but not injective, so entries whose key equals a match
    key are re-resolved with the original values.
    """

    def __init__(self, dist: torch.Tensor, num_gallery: int) -> None:
        self.exact = dist.dtype in (torch.float32, torch.float16, torch.bfloat16)
        self.index_bits = max(1, (num_gallery - 1).bit_length()) if self.exact else 0
        self.row_shift = 32 + self.index_bits

    def max_rows(self) -> int:
        return 1 << (63 - self.row_shift)

    def encode(self, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor | None) -> torch.Tensor:
        keys = _monotone_bits(values)
        if self.exact:
            keys <<= self.index_bits
            keys += cols
        keys += rows << self.row_shift
        return keys


def _preceding_matches(
    codec: _KeyCodec,
    values: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    match_keys: torch.Tensor,
    match_dist: torch.Tensor,
    match_idx: torch.Tensor,
) -> torch.Tensor:
    """For each entry (rows, cols, values): the flat histogram slot ``row * (width + 1) + p`` where
    ``p`` matches of its query precede it in the ranking."""
    width = match_dist.shape[1]
    keys = codec.encode(values, rows, cols)
    if codec.exact:
        return torch.searchsorted(match_keys, keys).add_(rows)  # row * width + p -> row * (width + 1) + p
    flat_position = torch.searchsorted(match_keys, keys, right=True)
    previous = match_keys.index_select(0, (flat_position - 1).clamp_(min=0))
    tied = torch.nonzero((previous == keys).logical_and_(flat_position > rows * width)).squeeze(1)
    slot = flat_position.add_(rows)
    block = max(1, _TIE_BLOCK_ELEMENTS // width)
    for start in range(0, tied.numel(), block):
        sel = tied[start : start + block]
        d_m, i_m = match_dist[rows[sel]], match_idx[rows[sel]]
        d_c, i_c = values[sel, None], cols[sel, None]
        exact = ((d_m < d_c) | ((d_m == d_c) & (i_m < i_c))).sum(dim=1)
        slot[sel] = rows[sel] * (width + 1) + exact
    return slot


def fused_cpu_path(dist_dtype: torch.dtype, device: torch.device) -> bool:
    """Whether :func:`match_ranks` counts candidates with the fused numpy pass (float32 on the CPU)."""
    return device.type == "cpu" and dist_dtype == torch.float32


def _candidate_counts(
    dist: torch.Tensor,
    worst: torch.Tensor,
    codec: _KeyCodec,
    match_keys: torch.Tensor,
    match_dist: torch.Tensor,
    match_idx: torch.Tensor,
) -> torch.Tensor:
    """Histogram over the flat slots ``row * (width + 1) + p`` of the candidates (entries no farther than
    their query's worst match), ``p`` the number of that query's matches preceding the candidate."""
    num_queries, num_gallery = dist.shape
    width = match_dist.shape[1]
    if fused_cpu_path(dist.dtype, dist.device):
        return _cpu_candidate_counts(dist, worst, _with_row_sentinels(match_keys, codec, num_queries))
    flat = _sparse_nonzero((dist <= worst[:, None]).view(-1))
    rows = torch.div(flat, num_gallery, rounding_mode="floor")
    cols = flat - rows * num_gallery
    slots = _preceding_matches(
        codec, dist.view(-1).index_select(0, flat), rows, cols, match_keys, match_dist, match_idx
    )
    return torch.bincount(slots, minlength=num_queries * (width + 1))


def _with_row_sentinels(match_keys: torch.Tensor, codec: _KeyCodec, num_queries: int) -> np.ndarray:
    """The block's match keys with one more key per row, above every key of that row and below the next
    row's: a candidate's ``searchsorted`` position is then its slot ``row * (width + 1) + p`` itself."""
    rows = torch.arange(1, num_queries + 1, dtype=torch.int64)
    sentinels = (rows << codec.row_shift) - 1
    return torch.cat([match_keys.view(num_queries, -1), sentinels[:, None]], dim=1).view(-1).numpy()


def _cpu_candidate_counts(dist: torch.Tensor, worst: torch.Tensor, slot_keys: np.ndarray) -> torch.Tensor:
    """:func:`_candidate_counts` for float32 on the CPU, fused: a few rows at a time (sized to stay in
    cache), each task finds its rows' candidates, encodes and searches them and counts the slots while
    those rows are still in cache — numpy's passes over a cached block instead of torch's full-size
    passes over memory. Tasks run on a pool of torch's thread count: numpy releases the GIL in these
    passes, and each task's temporaries are bounded by its few rows, so the pool adds little memory."""
    num_queries, num_gallery = dist.shape
    slots_per_row = slot_keys.size // max(num_queries, 1)
    threads = torch.get_num_threads()
    bounds = _task_bounds(num_queries, num_gallery, threads)
    index_bits = max(1, (num_gallery - 1).bit_length())
    # numpy views; detached because a distance matrix that requires grad is accepted (its values are used).
    dist_np, worst_np = dist.detach().numpy(), worst.detach().numpy()

    def task(first: int, last: int) -> np.ndarray:
        keys = slot_keys[first * slots_per_row : last * slots_per_row]
        return _task_counts(dist_np[first:last], worst_np[first:last], keys, first, index_bits)

    firsts, lasts = bounds[:-1], bounds[1:]
    workers = min(threads, len(firsts))
    if workers < 2:
        return torch.from_numpy(np.concatenate(list(map(task, firsts, lasts))))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dcac-rank") as pool:
        return torch.from_numpy(np.concatenate(list(pool.map(task, firsts, lasts))))


def _task_bounds(num_rows: int, num_gallery: int, workers: int) -> list[int]:
    """Row bounds of the fused pass's tasks: tasks of at most about :data:`_TASK_ELEMENTS` distances, as many as
    a multiple of ``workers`` (where there are rows enough) and of equal size to a row, so that no thread is left
    with one task more than the others. At Market-1501 size a block's 8 full tasks and a short one became 10 equal
    ones: 0-8 % faster on two threads (fastest and median of 8 alternated runs); at MSMT17 size equal."""
    tasks = -(-num_rows * num_gallery // _TASK_ELEMENTS)
    tasks = max(1, min(-(-tasks // workers) * workers, num_rows))
    return [num_rows * i // tasks for i in range(tasks + 1)]


def _monotone_u32(values: np.ndarray) -> np.ndarray:
    """int64 in [0, 2**32) ordered like the float32 ``values`` (overwritten; -0.0 and +0.0 equal):
    :func:`_monotone_bits` in numpy, in one pass."""
    values += np.float32(0.0)  # -0.0 and +0.0 must get one key
    bits = values.view(np.int32)
    # Negative floats reverse their magnitude order, and flipping the sign bit of the result (its + 2**31)
    # makes it an unsigned 32-bit number ordered like the floats.
    bits ^= (bits >> 31) | np.int32(-(1 << 31))
    return bits.view(np.uint32).astype(np.int64)


def _task_counts(dist: np.ndarray, worst: np.ndarray, keys: np.ndarray, first_row: int, index_bits: int) -> np.ndarray:
    """Slot counts of the candidates of rows ``first_row..`` of a block (``dist`` those rows, C-contiguous).

    A candidate's slot is ``row * (width + 1) + p``, ``p`` the number of its row's match keys below its
    key. Most candidates get it from a table instead of a binary search: each row's value range is cut
    into cells of ``2**shift`` consecutive monotone bit patterns (:func:`_cell_table`), and a candidate
    in a cell that holds no match is above exactly the matches of the earlier cells. Only candidates in
    a cell that holds a match (a few percent) are resolved by ``searchsorted`` of their full key.

    The full key of entry ``(row, col)`` is ``(row << (32 + index_bits)) + (monotone bits << index_bits)
    + col`` as :class:`_KeyCodec` encodes it; with ``flat = local_row * num_gallery + col`` that is
    ``(monotone bits << index_bits) + flat + offset[local_row]``, so no division recovers rows and columns.
    """
    num_rows, num_gallery = dist.shape
    flat = _candidate_positions(dist, worst)
    if flat.size == 0:
        return np.zeros(keys.size, dtype=np.int64)
    cand = _monotone_u32(dist.reshape(-1).take(flat))
    row_ends = np.searchsorted(flat, np.arange(1, num_rows + 1, dtype=np.int64) * num_gallery)
    per_row = np.diff(row_ends, prepend=0)
    table, cell_offset, shift = _cell_table(keys, index_bits, _monotone_u32(worst.copy()), int(cand.min()), per_row)
    cell = cand >> shift
    cell += np.repeat(cell_offset, per_row)
    slot = table.take(cell)
    shared = np.flatnonzero(slot < 0)  # in a cell with a match of their row
    if shared.size:
        rows = np.searchsorted(row_ends, shared, side="right")
        offsets = ((rows + first_row) << (32 + index_bits)) - rows * num_gallery
        full_keys = (cand[shared] << index_bits) + flat[shared] + offsets
        slot[shared] = np.searchsorted(keys, full_keys)
    # torch's bincount rather than numpy's: numpy's holds the GIL, so the pool's tasks would take turns.
    return torch.bincount(torch.from_numpy(slot), minlength=keys.size).numpy()


# numpy's nonzero of a bool array takes one of two loops by the density of True: up to this fraction a
# memchr per True entry (~12 ns each), above it a branchless loop (~0.4-0.6 ns per entry, any density).
_NONZERO_SPARSE_DENSITY = 0.1
# Below this density the memchr loop is the faster one (measured: equal at ~3 %).
_PADDING_PAYS_DENSITY = 0.03


def _candidate_positions(dist: np.ndarray, worst: np.ndarray) -> np.ndarray:
    """Flat positions of the entries of ``dist`` (C-contiguous rows) no farther than their row's ``worst``.

    With real features a few percent of the entries qualify (~6 % at Market-1501 size): the worst case of
    numpy's memchr loop (~1 ns per distance, half of the ranking pass). The mask is therefore written into
    a buffer with room after its end, and between 3 % and 10 % True entries are appended until the density
    crosses the threshold of numpy's branchless loop (~0.6 instead of ~1 ns per distance). Their positions
    are all past the mask's end, so they come last and are cut off; whatever loop numpy picks, the result
    is the same.
    """
    size = dist.size
    buffer = np.empty(size + size // 9 + 1, dtype=bool)  # the padding never exceeds size / 9
    mask = buffer[:size]
    np.less_equal(dist, worst[:, None], out=mask.reshape(dist.shape))
    count = np.count_nonzero(mask)
    padding = _dense_loop_padding(size, count)
    if padding == 0:
        return np.flatnonzero(mask)
    buffer[size : size + padding] = True
    return np.flatnonzero(buffer[: size + padding])[:count]


def _dense_loop_padding(size: int, count: int) -> int:
    """True entries to append to a mask of ``count`` True in ``size`` so that numpy takes its branchless loop
    (density above :data:`_NONZERO_SPARSE_DENSITY`); 0 where the memchr loop is as fast or already not taken."""
    if not _PADDING_PAYS_DENSITY * size < count <= _NONZERO_SPARSE_DENSITY * size:
        return 0
    return int((_NONZERO_SPARSE_DENSITY * size - count) / (1 - _NONZERO_SPARSE_DENSITY)) + 1


# Cells per row's value range in the candidate table: more cells, fewer candidates share a cell with a
# match (~6 % at Market-1501 size with 2**10), but a larger table to build per task.
_CELL_BITS = 10


def _cell_table(
    keys: np.ndarray, index_bits: int, worst_bits: np.ndarray, lowest_bits: int, per_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """The candidate-slot table of a task: ``(table, cell_offset, shift)``.

    A candidate with monotone bits ``b`` in local row ``r`` lies in cell ``(b >> shift) + cell_offset[r]``;
    row ``r``'s cells cover ``lowest_bits`` (the task's lowest candidate) to ``worst_bits[r]``. ``table``
    holds ``r * (width + 1) + (matches of row r in earlier cells)``, or -1 for a cell that holds a match.
    Exact because ``b -> b >> shift`` is monotone: a cell below a match's cell holds only smaller keys,
    a cell above it only larger ones; the sentinels and the +inf padding of short rows lie above ``worst``.
    """
    num_rows = per_row.size
    slots_per_row = keys.size // num_rows
    has = per_row > 0
    shift = max(0, int((worst_bits[has] - lowest_bits).max()).bit_length() - _CELL_BITS)
    lowest_cell, worst_cell = lowest_bits >> shift, worst_bits >> shift
    num_cells = np.where(has, worst_cell - lowest_cell + 1, 0)
    first_cell = np.cumsum(num_cells) - num_cells
    cell_offset = first_cell - lowest_cell
    match_cell = ((keys.reshape(num_rows, slots_per_row)[:, :-1] >> index_bits) & 0xFFFFFFFF) >> shift
    inside = (match_cell <= worst_cell[:, None]) & (match_cell >= lowest_cell) & has[:, None]
    matches_in_cell = np.bincount((match_cell + cell_offset[:, None])[inside], minlength=int(num_cells.sum()))
    before = np.cumsum(matches_in_cell) - matches_in_cell
    row_start = np.arange(num_rows, dtype=np.int64) * slots_per_row
    row_start[has] -= before[first_cell[has]]  # the matches of earlier rows
    table = before + np.repeat(row_start, num_cells)
    table[matches_in_cell > 0] = -1
    return table, cell_offset, shift


def _sparse_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Sorted indices of the True entries of a contiguous 1-D bool tensor that is mostly False.

    On the CPU numpy's ``flatnonzero`` is used: it is 1.5-3x faster than ``torch.nonzero`` at the
    few-percent densities of the candidate mask (and than the word scan below, whose words mostly hold
    a True at those densities) and it was the largest cost above the GEMM. Elsewhere ``torch.nonzero``
    costs about a nanosecond per *input* byte; scanning the mask as int64 words first (8 flags per
    word) and expanding only the words that hold a True is several times cheaper there.
    """
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    whole = mask.numel() - mask.numel() % 8
    if whole == 0 or mask.storage_offset() % 8:
        return torch.nonzero(mask).squeeze(1)
    words = mask[:whole].view(torch.int64)
    hit_words = torch.nonzero(words).squeeze(1)
    in_words = torch.nonzero(mask[:whole].view(-1, 8).index_select(0, hit_words).view(-1)).squeeze(1)
    found = hit_words.index_select(0, in_words >> 3) * 8 + (in_words & 7)
    if whole == mask.numel():
        return found
    return torch.cat([found, torch.nonzero(mask[whole:]).squeeze(1) + whole])


def max_block_rows(dist_dtype: torch.dtype, num_gallery: int) -> int:
    """Most query rows one :func:`match_ranks` call can take (the row must fit in the int64 keys)."""
    return _KeyCodec(torch.empty(0, dtype=dist_dtype), num_gallery).max_rows()


def match_ranks(dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor, gallery: GalleryIndex) -> MatchRanks:
    """Ranks of the true matches of each query row of ``dist`` (finite distances, ``(B, G)``)."""
    num_queries, num_gallery = dist.shape
    device = dist.device
    same_idx, same_present = gallery.same_identity(q_pids)
    same_camera = gallery.camids[same_idx] == q_camids[:, None]
    is_match = same_present & ~same_camera
    num_matches = is_match.sum(dim=1)
    width = int(num_matches.max()) if num_queries else 0
    if width == 0:
        return MatchRanks(torch.zeros(num_queries, 0, dtype=torch.int64, device=device), num_matches)

    # Matches sorted by (distance, gallery index): same_idx is ascending, the sort is stable and
    # non-matches become +inf, which sorts after every finite distance.
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=device)
    same_dist = dist.gather(1, same_idx)
    match_dist, perm = torch.sort(torch.where(is_match, same_dist, inf), dim=1, stable=True)
    match_dist = match_dist[:, :width].contiguous()
    match_idx = same_idx.gather(1, perm)[:, :width]
    codec = _KeyCodec(dist, num_gallery)
    if num_queries > codec.max_rows():
        raise ValueError(
            f"match_ranks: at most {codec.max_rows()} query rows per block for {num_gallery} gallery entries"
        )
    row_ids = torch.arange(num_queries, device=device)
    match_keys = codec.encode(match_dist, row_ids[:, None].expand_as(match_idx), match_idx).view(-1)

    worst = match_dist.gather(1, (num_matches - 1).clamp(min=0)[:, None]).squeeze(1)
    worst = torch.where(num_matches > 0, worst, -inf)
    dist = dist.contiguous()
    counts = _candidate_counts(dist, worst, codec, match_keys, match_dist, match_idx)

    # Junk candidates (same identity and camera) are taken back out of the histogram.
    junk = same_present & same_camera & (same_dist <= worst[:, None])
    junk_rows, junk_slot = torch.nonzero(junk, as_tuple=True)
    junk_slots = _preceding_matches(
        codec,
        same_dist[junk_rows, junk_slot],
        junk_rows,
        same_idx[junk_rows, junk_slot],
        match_keys,
        match_dist,
        match_idx,
    )

    # A valid candidate with `p` preceding matches precedes matches p, p+1, ...; so the number of
    # valid entries up to and including match i is the cumulated histogram of p at i.
    hist = counts - torch.bincount(junk_slots, minlength=num_queries * (width + 1))
    ranks = hist.view(num_queries, width + 1).cumsum(dim=1)[:, :width] - 1
    return MatchRanks(ranks, num_matches)

"""The two sums over votes that the consensus's EM takes at every step, compiled (numba): at millions of votes
they are most of a step, and numpy can only take them through arrays of votes x classes (several passes over
memory as large as the votes times the classes; a step of 10^6 votes took 0.3 s, BENCHMARKS.md "Ingest at
scale"). Both walk the votes in CSR order, one row at a time, writing each row's result once. Above
``PARALLEL_VOTES`` votes the rows are split into parts of about equal votes, one thread per core (the kernels
release the GIL); below it threads cost more than they save, as in the campaign loop's small fits."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

#: votes (or rows, for the kernels over posteriors alone) from which a kernel runs on every core
PARALLEL_VOTES = 200_000


def run(kernel: Callable[..., None], indptr: np.ndarray, *arrays: np.ndarray) -> None:
    """``kernel(first_row, last_row, indptr, *arrays)`` over all rows of the CSR ``indptr``: at once, or, with at
    least ``PARALLEL_VOTES`` votes, in parts of about equal votes, four per core, taken by one thread per core as
    each is free (on a busy machine a core may give a thread less than its share)."""
    n_rows = len(indptr) - 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if indptr[-1] < PARALLEL_VOTES or cores < 2:
        kernel(0, n_rows, indptr, *arrays)
        return
    parts = 4 * cores
    cuts = np.searchsorted(indptr, np.linspace(0, indptr[-1], parts + 1)[1:-1])
    bounds = np.r_[0, np.clip(cuts, 0, n_rows), n_rows]
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(lambda part: kernel(bounds[part], bounds[part + 1], indptr, *arrays), range(parts)))


@njit(cache=True, nogil=True)
def subject_posteriors(first: int, last: int, indptr: np.ndarray, keys: np.ndarray, log_table: np.ndarray,
                       log_start: np.ndarray, out: np.ndarray) -> None:
    """E-step. Row r of ``out`` := softmax(log_start[r] + sum of log_table[keys[i]] over the votes i of subject r,
    ``indptr[r]:indptr[r + 1]``): each subject's posterior given each vote's log-likelihood row."""
    n_classes = out.shape[1]
    row_log = np.empty(n_classes)
    for row in range(first, last):
        row_log[:] = 0.0  # the votes summed first: two classes tied by the votes stay exactly tied
        for i in range(indptr[row], indptr[row + 1]):
            key = keys[i]
            for t in range(n_classes):
                row_log[t] += log_table[key, t]
        for t in range(n_classes):
            row_log[t] += log_start[row, t]
        top = row_log.max()
        total = 0.0
        for t in range(n_classes):
            row_log[t] = np.exp(row_log[t] - top)
            total += row_log[t]
        scale = 1.0 / total
        for t in range(n_classes):
            out[row, t] = row_log[t] * scale


@njit(cache=True, nogil=True)
def left_out_counts(first: int, last: int, indptr: np.ndarray, subjects: np.ndarray, judged: np.ndarray,
                    post: np.ndarray, inverse: np.ndarray, out: np.ndarray) -> None:
    """M-step counts. Row j of ``out`` (a (volunteer, answer) key) := the sum, over its votes i (``indptr[j]:
    indptr[j + 1]``, on subject ``subjects[i]``), of the subject's posterior, without that vote where ``judged[i]``
    (leave one out: post[s] * inverse[j] renormalised, ``inverse`` being 1 / P(answer | true class))."""
    n_classes = out.shape[1]
    left_out = np.empty(n_classes)
    for key in range(first, last):
        left_out[:] = 0.0
        for t in range(n_classes):
            out[key, t] = 0.0
        for i in range(indptr[key], indptr[key + 1]):
            subject = subjects[i]
            if judged[i]:
                total = 0.0
                for t in range(n_classes):
                    total += post[subject, t] * inverse[key, t]
                scale = 1.0 / total
                for t in range(n_classes):
                    left_out[t] += post[subject, t] * scale
            else:
                for t in range(n_classes):
                    out[key, t] += post[subject, t]
        for t in range(n_classes):
            out[key, t] += left_out[t] * inverse[key, t]


@njit(cache=True, nogil=True)
def row_changes(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Per row: max |new - old| over its entries (no temporary array of rows x classes)."""
    changes = np.empty(new.shape[0])
    for row in range(new.shape[0]):
        largest = 0.0
        for t in range(new.shape[1]):
            largest = max(largest, abs(new[row, t] - old[row, t]))
        changes[row] = largest
    return changes


#: the least probability taken into logs by SQUAREM's jump (a posterior of exactly 0 would be -inf); the jump's logs
#: are single precision (a guess that the next plain EM step judges: twice as fast as double)
LOG_FLOOR = np.float32(1e-30)


@njit(cache=True, nogil=True)
def squarem_sums(first: int, last: int, rows: np.ndarray, start: np.ndarray, one: np.ndarray, two: np.ndarray,
                 out: np.ndarray) -> None:
    """Per row r: out[r] := (|r_r|^2, |v_r|^2) for SQUAREM's step length, with r = log one - log start and v = log
    two - 2 log one + log start (``rows``: the row boundaries, one per row, for ``run``)."""
    for row in range(first, last):
        rr = 0.0
        vv = 0.0
        for t in range(start.shape[1]):
            a = np.log(max(start[row, t], LOG_FLOOR))
            b = np.log(max(one[row, t], LOG_FLOOR))
            c = np.log(max(two[row, t], LOG_FLOOR))
            rr += (b - a) ** 2
            vv += (c - 2 * b + a) ** 2
        out[row, 0] = rr
        out[row, 1] = vv


@njit(cache=True, nogil=True)
def squarem_rows(first: int, last: int, rows: np.ndarray, start: np.ndarray, one: np.ndarray, two: np.ndarray,
                 length: float, out: np.ndarray) -> None:
    """Row r of ``out`` := softmax(log start + 2 length r + length^2 v) (see ``squarem_sums``)."""
    n_classes = out.shape[1]
    row_log = np.empty(n_classes)
    for row in range(first, last):
        for t in range(n_classes):
            a = np.log(max(start[row, t], LOG_FLOOR))
            b = np.log(max(one[row, t], LOG_FLOOR))
            c = np.log(max(two[row, t], LOG_FLOOR))
            row_log[t] = a + 2.0 * length * (b - a) + length * length * (c - 2 * b + a)
        top = row_log.max()
        total = 0.0
        for t in range(n_classes):
            row_log[t] = np.exp(row_log[t] - top)
            total += row_log[t]
        for t in range(n_classes):
            out[row, t] = row_log[t] / total

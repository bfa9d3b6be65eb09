"""Inputs are read in place when C-contiguous float32; long calls release the GIL."""

import threading
import time

import numpy as np

from vellum._vellum import matrix_source


def test_c_contiguous_float32_is_read_without_a_copy():
    a = np.random.default_rng(0).standard_normal((100, 16)).astype(np.float32)
    kind, address = matrix_source(a)
    assert kind == "borrowed" and address == a.ctypes.data
    view = a[10:20]  # a C-contiguous view: still borrowed, at the view's address
    assert matrix_source(view) == ("borrowed", view.ctypes.data)


def test_other_layouts_and_dtypes_are_copied_once():
    a = np.random.default_rng(0).standard_normal((100, 16)).astype(np.float32)
    for other in (np.asfortranarray(a), a[:, ::2], a.astype(np.float64), a.astype(np.float16),
                  a.tolist()):
        kind, address = matrix_source(other)
        assert kind == "copied"


def test_search_releases_the_gil(db):
    rng = np.random.default_rng(1)
    c = db.create_collection("c", ["emb:dense:128:f32:l2"])
    x = rng.standard_normal((20_000, 128)).astype(np.float32)
    c.add([f"d{i}" for i in range(20_000)], vectors={"emb": x})
    db.commit()
    queries = rng.standard_normal((4_000, 128)).astype(np.float32)

    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)  # yields, but only a released GIL lets this thread run during search

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    c.search(queries, k=10, exact=True)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    assert end - start > 0.05, "the search must run long enough to observe"
    # With the GIL held for the whole search the counter thread could not run at all.
    assert len(during) > 100, f"{len(during)} ticks in {end - start:.3f} s of search"

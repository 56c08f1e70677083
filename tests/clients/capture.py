"""Run one of the original project's Python clients unchanged, and record the boxes it draws.

    python capture.py OUT.json SCRIPT [ARGS...]

The script runs as ``__main__`` (runpy) with ``sys.argv = [SCRIPT, *ARGS]``, from the current folder.
Before it starts, ``cv2.rectangle`` is wrapped: each call is recorded under the image last read by
``cv2.imread`` and then drawn as before. The GUI calls (``imshow``, ``waitKey``, ``destroyAllWindows``)
do nothing: there is no display here. Nothing of the script is copied or edited. OUT.json gets
``{"images": {file name: [[x1, y1, x2, y2], ...]}}`` in drawing order, written when the script ends.
"""
from __future__ import annotations

import json
import os
import runpy
import sys


def main() -> None:
    out, script, *args = sys.argv[1:]
    import cv2

    drawn: dict[str, list] = {}
    current = [None]
    imread, rectangle = cv2.imread, cv2.rectangle

    def reading(path, *a, **k):
        current[0] = os.path.basename(str(path))
        drawn.setdefault(current[0], [])
        return imread(path, *a, **k)

    def drawing(img, pt1, pt2, *a, **k):
        drawn.setdefault(current[0], []).append([int(pt1[0]), int(pt1[1]), int(pt2[0]), int(pt2[1])])
        return rectangle(img, pt1, pt2, *a, **k)

    cv2.imread, cv2.rectangle = reading, drawing
    cv2.imshow = lambda *a, **k: None
    cv2.waitKey = lambda *a, **k: -1
    cv2.destroyAllWindows = lambda *a, **k: None
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"images": drawn}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()

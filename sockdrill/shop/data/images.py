"""Product images drawn by us with Pillow: a stylised sock, coloured by the sock's tags, with a pattern.

Every image file name the seed uses gets its own picture (a sock's first and second image differ: one
sock, then a pair on another background). Pictures are deterministic, kept in memory once drawn and
cached on disk (``SOCKDRILL_CACHE_DIR``, default ``~/.cache/sockdrill``) so a service starts fast.
"""

from __future__ import annotations

import io
import os
import threading
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

from sockdrill.shop.data.seed import SOCKS, Sock

VERSION = 1  # bump when the drawing changes, so old disk caches are ignored
SIZE = 400
CONTENT_TYPE = "image/jpeg"

_COLOURS: dict[str, tuple[int, int, int]] = {
    "brown": (128, 84, 52),
    "blue": (44, 88, 170),
    "red": (196, 44, 56),
    "black": (38, 38, 44),
    "green": (52, 134, 76),
    "skin": (232, 192, 160),
}
_PATTERNS = {"geek": "bits", "formal": "argyle", "action": "zigzag", "sport": "stripes", "magic": "stars"}

_lock = threading.Lock()
_memory: dict[str, bytes] = {}


def _index() -> dict[str, tuple[Sock, int]]:
    out: dict[str, tuple[Sock, int]] = {}
    for sock in SOCKS:
        for variant, name in enumerate(sock.images):
            out.setdefault(name, (sock, variant))
    return out


_FILES = _index()


def image_names() -> list[str]:
    return list(_FILES)


def cache_dir() -> Path:
    root = os.environ.get("SOCKDRILL_CACHE_DIR") or os.path.join(Path.home(), ".cache", "sockdrill")
    return Path(root) / f"images-v{VERSION}"


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _palette(sock: Sock) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    colours = [_COLOURS[t] for t in sock.tags if t in _COLOURS]
    h = zlib.crc32(sock.name.encode())
    if not colours:  # no colour tag: a hue from the name
        colours = [((h & 0xFF) // 2 + 90, (h >> 8 & 0xFF) // 2 + 40, (h >> 16 & 0xFF) // 2 + 60)]
    main = colours[0]
    if len(colours) > 1:
        accent = colours[1]
    else:
        accent = _mix(main, (255, 255, 255), 0.55) if sum(main) < 380 else _mix(main, (0, 0, 0), 0.5)
    return main, accent


def _sock_mask(size: tuple[int, int]) -> Image.Image:
    """A sock standing up, foot pointing right, in a ``size`` box."""
    w, h = size
    mask = Image.new("L", size, 0)
    d = ImageDraw.Draw(mask)
    leg_w = int(w * 0.42)
    foot_h = int(h * 0.3)
    d.rectangle((0, 0, leg_w, h - foot_h // 2), fill=255)
    d.rounded_rectangle((0, h - foot_h, w - 1, h - 1), radius=foot_h // 2, fill=255)
    d.ellipse((0, h - foot_h - leg_w // 3, leg_w, h - 1), fill=255)  # heel curve
    return mask


def _pattern(kind: str, size: tuple[int, int], main: tuple[int, int, int], accent: tuple[int, int, int],
             salt: int) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, main)
    d = ImageDraw.Draw(img)
    step = 22 + salt % 12
    if kind == "stripes":
        for y in range(0, h, step * 2):
            d.rectangle((0, y, w, y + step // 2), fill=accent)
    elif kind == "argyle":
        for row, y in enumerate(range(-step, h + step, step * 2)):
            for x in range(-step + (row % 2) * step, w + step, step * 2):
                d.polygon([(x, y - step), (x + step, y), (x, y + step), (x - step, y)], fill=accent)
        for x in range(-h, w, step * 2):
            d.line((x, 0, x + h, h), fill=_mix(accent, (255, 255, 255), 0.6), width=2)
    elif kind == "zigzag":
        for y in range(0, h + step, step):
            pts = [(x, y + (step // 2 if (x // step) % 2 else 0)) for x in range(0, w + step, step)]
            d.line(pts, fill=accent, width=max(4, step // 4))
    elif kind == "stars":
        for k in range(int(w * h / (step * step * 2))):
            x = (salt * 7919 + k * 104729) % w
            y = (salt * 31 + k * 7727) % h
            r = 3 + (k * 13 + salt) % 6
            d.polygon([(x, y - 2 * r), (x + r // 2, y - r // 2), (x + 2 * r, y), (x + r // 2, y + r // 2),
                       (x, y + 2 * r), (x - r // 2, y + r // 2), (x - 2 * r, y), (x - r // 2, y - r // 2)],
                      fill=accent)
    elif kind == "bits":
        cell = 12
        for y in range(0, h, cell * 2):
            for x in range(0, w, cell):
                if (x * 31 + y * 17 + salt) % 5 < 2:
                    d.rectangle((x, y, x + cell - 3, y + cell - 3), fill=accent)
    else:  # dots
        for y in range(step // 2, h, step):
            for x in range(step // 2 + (y // step % 2) * step // 2, w, step):
                d.ellipse((x - 4, y - 4, x + 4, y + 4), fill=accent)
    return img


def _draw_sock(canvas: Image.Image, box: tuple[int, int, int, int], sock: Sock, flip: bool,
               salt: int) -> None:
    x0, y0, x1, y1 = box
    size = (x1 - x0, y1 - y0)
    main, accent = _palette(sock)
    kind = next((_PATTERNS[t] for t in sock.tags if t in _PATTERNS), "dots")
    mask = _sock_mask(size)
    body = _pattern(kind, size, main, accent, salt)
    d = ImageDraw.Draw(body)
    w, h = size
    cuff = int(h * 0.12)
    d.rectangle((0, 0, w, cuff), fill=accent)
    for y in range(4, cuff, 8):  # ribbing
        d.line((0, y, w, y), fill=_mix(accent, main, 0.35), width=2)
    d.ellipse((w - int(h * 0.32), h - int(h * 0.3), w + int(h * 0.05), h), fill=accent)  # toe
    d.ellipse((-int(w * 0.12), h - int(h * 0.36), int(w * 0.3), h + int(h * 0.04)), fill=accent)  # heel
    if "magic" in sock.tags and "action" in sock.tags:  # the Holy sock: show its holes
        for cx, cy in ((int(w * 0.8), int(h * 0.88)), (int(w * 0.2), int(h * 0.45))):
            d.ellipse((cx - 9, cy - 7, cx + 9, cy + 7), fill=(250, 248, 240))
    if flip:
        mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        body = body.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    shadow = Image.new("RGB", size, _mix(main, (0, 0, 0), 0.6))
    canvas.paste(shadow, (x0 + 5, y0 + 6), mask)
    canvas.paste(body, (x0, y0), mask)


def draw(name: str) -> bytes:
    """The JPEG bytes of image ``name`` (raises KeyError for a name the seed does not use)."""
    sock, variant = _FILES[name]
    salt = zlib.crc32(name.encode())
    main, accent = _palette(sock)
    if variant == 0:
        bg = _mix(accent, (255, 255, 255), 0.85)
        img = Image.new("RGB", (SIZE, SIZE), bg)
        _draw_sock(img, (90, 40, 330, 370), sock, flip=False, salt=salt)
    else:
        bg = _mix(main, (250, 246, 236), 0.8)
        img = Image.new("RGB", (SIZE, SIZE), bg)
        d = ImageDraw.Draw(img)
        for x in range(-SIZE, SIZE, 40):  # a floor of boards under the pair
            d.line((x, SIZE, x + SIZE, 0), fill=_mix(bg, (0, 0, 0), 0.06), width=14)
        _draw_sock(img, (20, 70, 210, 350), sock, flip=True, salt=salt)
        _draw_sock(img, (190, 50, 380, 330), sock, flip=False, salt=salt + 1)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


def image_bytes(name: str) -> bytes | None:
    """The picture for file ``name``, or None if the seed has no such image. Cached in memory and on disk."""
    if name not in _FILES:
        return None
    data = _memory.get(name)
    if data is not None:
        return data
    with _lock:
        data = _memory.get(name)
        if data is None:
            data = _load_or_draw(name)
            _memory[name] = data
    return data


def _load_or_draw(name: str) -> bytes:
    path = cache_dir() / name
    try:
        data = path.read_bytes()
        if data:
            return data
    except OSError:
        pass
    data = draw(name)
    try:  # best effort: a read-only home just means drawing again next start
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        pass
    return data


def warm() -> dict[str, bytes]:
    """Load (or draw) every image now; returns name → bytes."""
    return {name: image_bytes(name) or b"" for name in _FILES}

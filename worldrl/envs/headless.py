"""Headless OpenGL for MuJoCo rendering, chosen before dm_control is imported.

dm_control and mujoco read ``MUJOCO_GL`` once, at import time, so the choice is
made here and written to the environment (where subprocesses, such as async
vector-env workers, inherit it). A value the user set is always respected.
Otherwise EGL is used when a headless EGL display can be initialised, then
OSMesa when its library is installed; when neither works rendering is disabled
and :func:`require_rendering` explains what to install.

Mesa's software rasteriser (llvmpipe) is also made single-threaded
(``LP_NUM_THREADS=0``) unless the user chose otherwise: its worker threads do
not survive ``fork``, so an async vector env forked after the parent rendered a
frame hangs forever, and for 64x64 frames one thread is as fast (18 ms vs
20 ms per frame measured here). GPU EGL drivers ignore the variable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_EGL_PLATFORM_DEVICE_EXT = 0x313F
_EGL_SUCCESS = 0x3000

_probe_failures: dict[str, str] = {}


def _egl_works() -> bool:
    """Whether EGL can open a display on some device, as dm_control's EGL backend does."""
    try:
        egl = ctypes.CDLL(ctypes.util.find_library("EGL") or "libEGL.so.1")
    except OSError as error:
        _probe_failures["egl"] = f"libEGL not found ({error})"
        return False
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query_ptr = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    display_ptr = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if not query_ptr or not display_ptr:
        _probe_failures["egl"] = "libEGL lacks the EGL_EXT_device_enumeration extension"
        return False
    query_devices = ctypes.CFUNCTYPE(
        ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)
    )(query_ptr)
    get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(
        display_ptr
    )
    devices = (ctypes.c_void_p * 8)()
    count = ctypes.c_int(0)
    if not query_devices(8, devices, ctypes.byref(count)):
        _probe_failures["egl"] = "eglQueryDevicesEXT failed"
        return False
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    for device in devices[: count.value]:
        display = get_display(_EGL_PLATFORM_DEVICE_EXT, device, None)
        if display and egl.eglInitialize(display, None, None):
            egl.eglTerminate(display)
            return True
    _probe_failures["egl"] = f"no EGL device could be initialised ({count.value} found)"
    return False


def _osmesa_works() -> bool:
    if ctypes.util.find_library("OSMesa"):
        return True
    _probe_failures["osmesa"] = "libOSMesa not found"
    return False


def configure_mujoco_gl() -> str:
    """Set ``MUJOCO_GL`` (and PyOpenGL's platform) if unset; return the backend in use."""
    os.environ.setdefault("LP_NUM_THREADS", "0")
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    for backend, works in (("egl", _egl_works), ("osmesa", _osmesa_works)):
        if works():
            chosen = backend
            break
    else:
        chosen = "disabled"
    os.environ["MUJOCO_GL"] = chosen
    if chosen != "disabled":
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


def require_rendering() -> None:
    """Raise a clear error when pixels are asked for but no headless OpenGL backend works."""
    if os.environ.get("MUJOCO_GL", "").lower() not in ("disable", "disabled", "off", "false", "0"):
        return
    reasons = "; ".join(f"{name}: {why}" for name, why in _probe_failures.items()) or "MUJOCO_GL disables it"
    raise RuntimeError(
        "MuJoCo pixel observations need a headless OpenGL backend and none works here "
        f"({reasons}). Install EGL (Debian/Ubuntu: `apt-get install libegl1 libgl1`) or OSMesa "
        "(`apt-get install libosmesa6`), or set MUJOCO_GL=egl|osmesa|glfw yourself. "
        'obs_type="state" needs no rendering.'
    )

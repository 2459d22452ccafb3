"""`frugal watch`: evaluation frames shown live in a window (pygame, which Gymnasium's
classic-control extra already brings), paced to VIDEO_FPS times a speed factor."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from frugal.errors import FrugalError


class WindowClosed(Exception):
    """The user closed the window (or pressed Esc or q): watching ends there."""


def has_display() -> bool:
    """Whether a window can be opened: an X or Wayland display (elsewhere, macOS and Windows
    always have one)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Window:
    """Shows one frame [H, W, 3] per `frame()` call, at `fps` frames per second. Space pauses;
    Esc, q or closing the window raises WindowClosed."""

    def __init__(self, fps: float, title: str):
        self.fps, self.title = fps, title
        self._screen = None
        self._last = 0.0

    def _open(self, size: tuple[int, int]) -> None:
        try:
            import pygame
        except ImportError:
            raise FrugalError(
                "frugal watch needs pygame (pip install pygame-ce); or write episode pages "
                "instead: frugal eval RUN_DIR --viewer"
            ) from None
        if os.environ.get("SDL_VIDEODRIVER") == "dummy":  # set for headless rendering
            del os.environ["SDL_VIDEODRIVER"]
        pygame.display.init()
        pygame.display.set_caption(self.title)
        self._screen = pygame.display.set_mode(size)

    def frame(self, image: np.ndarray) -> None:
        if self._screen is None:
            self._open((image.shape[1], image.shape[0]))
        import pygame

        surface = pygame.surfarray.make_surface(np.ascontiguousarray(image.transpose(1, 0, 2)))
        self._screen.blit(surface, (0, 0))
        pygame.display.flip()
        paused = False
        while True:
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (
                    event.type == pygame.KEYDOWN and event.key in (pygame.K_ESCAPE, pygame.K_q)
                ):
                    raise WindowClosed
                if event.type == pygame.KEYDOWN and event.key == pygame.K_SPACE:
                    paused = not paused
            wait = self._last + 1.0 / self.fps - time.perf_counter()
            if not paused and wait <= 0:
                break
            time.sleep(0.01 if paused else min(wait, 0.01))
        self._last = time.perf_counter()

    def close(self) -> None:
        if self._screen is not None:
            import pygame

            pygame.display.quit()
            self._screen = None

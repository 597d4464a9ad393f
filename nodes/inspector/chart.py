"""The Prompt Safety Inspector's chart, drawn with Pillow (which ComfyUI already has).

One block per prompt: its text and verdict, then one horizontal bar per category showing how far
the gate would open for it (0..1, the dashed line is where a prompt counts as flagged), with the
source LLM's projection (benign-anchor standard deviations) written beside it. Readable at 768 px.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

WIDTH = 768
MARGIN = 16
LABEL_WIDTH = 150
VALUE_WIDTH = 150
BAR_HEIGHT = 18
BAR_GAP = 5
HEADER_HEIGHT = 30
BLOCK_GAP = 18
TITLE_HEIGHT = 58

BACKGROUND = (24, 26, 30)
TEXT = (230, 230, 230)
MUTED = (150, 155, 165)
TRACK = (48, 52, 60)
SAFE = (70, 150, 110)
OPEN = (215, 70, 60)
PARTLY = (225, 160, 60)
THRESHOLD = (240, 240, 240)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _bar_colour(value: float, threshold: float) -> tuple[int, int, int]:
    if value >= threshold:
        return OPEN
    return PARTLY if value >= threshold / 5 else SAFE


def draw_chart(inspection: dict) -> Image.Image:
    """The chart of an inspection payload (steering.application.inspection.Inspection.as_dict())."""
    categories = inspection["categories"]
    prompts = inspection["prompts"]
    threshold = float(inspection["threshold"])
    block = HEADER_HEIGHT + len(categories) * (BAR_HEIGHT + BAR_GAP) + BLOCK_GAP
    height = TITLE_HEIGHT + max(1, len(prompts)) * block + MARGIN
    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    title, small, label, verdict = _font(20), _font(13), _font(14), _font(15)
    gate = inspection.get("gate", {})
    draw.text((MARGIN, 10), "Prompt Safety Inspector", font=title, fill=TEXT)
    subtitle = f"bar: gate opening per category (0-1, flagged at {threshold:g}); right: projection in benign-anchor SD"
    draw.text((MARGIN, 36), _fit(draw, subtitle, small, WIDTH - 2 * MARGIN), font=small, fill=MUTED)
    if gate.get("warning"):
        warning = _fit(draw, "! " + gate["warning"], small, WIDTH // 2)
        draw.text((WIDTH - MARGIN - draw.textlength(warning, font=small), 14), warning, font=small, fill=PARTLY)
    bar_left, bar_right = MARGIN + LABEL_WIDTH, WIDTH - MARGIN - VALUE_WIDTH
    y = TITLE_HEIGHT
    for reading in prompts:
        flagged = reading["flagged"]
        badge = f"FLAGGED {reading['score']:.2f}" if flagged else f"ok {reading['score']:.2f}"
        badge_width = int(draw.textlength(badge, font=verdict)) + 16
        draw.rounded_rectangle(
            (WIDTH - MARGIN - badge_width, y, WIDTH - MARGIN, y + 22), radius=5, fill=OPEN if flagged else SAFE
        )
        draw.text((WIDTH - MARGIN - badge_width + 8, y + 3), badge, font=verdict, fill=(255, 255, 255))
        text = _fit(draw, reading["prompt"], verdict, WIDTH - 3 * MARGIN - badge_width)
        draw.text((MARGIN, y + 3), text, font=verdict, fill=TEXT)
        y += HEADER_HEIGHT
        for category in categories:
            opening = float(reading["detector"].get(category, 0.0))
            projection = reading["projection"].get(category)
            top = category == reading.get("top_category")
            name = ("> " if top else "  ") + category
            colour = TEXT if top else MUTED
            draw.text((MARGIN, y + 1), _fit(draw, name, label, LABEL_WIDTH - 8), font=label, fill=colour)
            draw.rectangle((bar_left, y, bar_right, y + BAR_HEIGHT), fill=TRACK)
            filled = bar_left + (bar_right - bar_left) * min(max(opening, 0.0), 1.0)
            if filled > bar_left:
                draw.rectangle((bar_left, y, filled, y + BAR_HEIGHT), fill=_bar_colour(opening, threshold))
            line_x = bar_left + (bar_right - bar_left) * threshold
            for dash in range(y - 2, y + BAR_HEIGHT + 2, 4):
                draw.line((line_x, dash, line_x, dash + 2), fill=THRESHOLD, width=2)
            value = f"{opening:.2f}" + (f"   {projection:+.2f} SD" if projection is not None else "")
            draw.text((bar_right + 10, y + 1), value, font=label, fill=TEXT if opening >= threshold else MUTED)
            y += BAR_HEIGHT + BAR_GAP
        y += BLOCK_GAP
    if not prompts:
        draw.text((MARGIN, y), "No prompt: write one prompt per line.", font=verdict, fill=MUTED)
    return image


def chart_tensor(image: Image.Image) -> torch.Tensor:
    """A Pillow image as ComfyUI's IMAGE: [1, H, W, 3] float in 0..1."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).unsqueeze(0)

"""Text side of the CLIP CAMs: prompt templates, class-name synonyms and background prompts.

Why these lists exist: CLIP scores a *sentence*, so what a class is called decides where its map lands.
CLIP-ES (Lin et al., CVPR 2023) found that a single template ('a clean origami {}.') beats long template
ensembles for localisation, that a few synonyms in one prompt ('person with clothes,people,human') fix
ambiguous dataset names, and that adding generic background concepts (ground, sky, rail, water, ...) as extra
classes in the softmax pulls co-occurring background away from the objects (the 'train on rails' bias).
The lists below are those facts, written down as data; anything here can be overridden from the config.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from wsss.errors import WSSSError

#: The template CLIP-ES uses for both foreground and background prompts.
CLIP_ES_TEMPLATES: tuple[str, ...] = ("a clean origami {}.",)

#: A small generic ensemble, for trying alternatives from the config (``templates='photo'``).
PHOTO_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "a photo of the {}.", "a good photo of a {}.", "a close-up photo of a {}.",
    "a bright photo of a {}.", "a cropped photo of a {}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"clip_es": CLIP_ES_TEMPLATES, "photo": PHOTO_TEMPLATES}

#: Background concepts CLIP-ES appends to the softmax for PASCAL VOC.
VOC_BACKGROUND: tuple[str, ...] = (
    "ground", "land", "grass", "tree", "building", "wall", "sky", "lake", "water", "river", "sea", "railway",
    "railroad", "keyboard", "helmet", "cloud", "house", "mountain", "ocean", "road", "rock", "street", "valley",
    "bridge", "sign",
)

#: The COCO list drops 'keyboard' and 'sign', which are (parts of) COCO object classes.
COCO_BACKGROUND: tuple[str, ...] = tuple(b for b in VOC_BACKGROUND if b not in ("keyboard", "sign"))

BACKGROUND_SETS: dict[str, tuple[str, ...]] = {"voc": VOC_BACKGROUND, "coco": COCO_BACKGROUND}

#: Dataset class name -> the text CLIP sees (synonym fusion in one prompt, as CLIP-ES). Keys cover the VOC
#: names and the COCO names of wsss.data.classes; a name not listed is used as written ('_' -> ' ').
CLASS_SYNONYMS: dict[str, str] = {
    # VOC
    "bird": "bird avian",
    "chair": "chair seat",
    "person": "person with clothes,people,human",
    "tvmonitor": "tvmonitor screen",
    # COCO (wsss.data.classes spelling)
    "tv": "tvmonitor screen",
    "backpack": "backpack,bag",
    "umbrella": "umbrella,parasol",
    "handbag": "handbag,purse",
    "tie": "necktie",
    "baseball glove": "glove",
    "spoon": "dessertspoon",
    "remote": "remote control",
    "hair drier": "hairdrier,blowdrier",
}


def resolve_templates(spec: str | Sequence[str] | None) -> list[str]:
    """Templates from a config value: a set name ('clip_es', 'photo'), a list of '{}' strings, or None."""
    if spec is None:
        return list(CLIP_ES_TEMPLATES)
    if isinstance(spec, str):
        if spec in TEMPLATE_SETS:
            return list(TEMPLATE_SETS[spec])
        spec = [spec]
    out = [str(t) for t in spec]
    bad = [t for t in out if "{}" not in t]
    if not out or bad:
        raise WSSSError(f"clip_cam.templates: every template needs a '{{}}' for the class name, got {bad or out}")
    return out


def resolve_background(spec: str | Sequence[str] | None) -> list[str]:
    """Background prompts from a config value: 'voc', 'coco', a list of concepts, or None/[] for none."""
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec not in BACKGROUND_SETS:
            raise WSSSError(f"clip_cam.background_prompts: unknown set '{spec}'; use one of "
                            f"{sorted(BACKGROUND_SETS)} or a list of words")
        return list(BACKGROUND_SETS[spec])
    return [str(b) for b in spec]


def class_prompt_names(class_names: Sequence[str], overrides: Mapping[str, str | Sequence[str]] | None = None,
                       use_synonyms: bool = True) -> list[list[str]]:
    """The text(s) each foreground class is called by, one list per class 1..C-1.

    class_names: all class names with 'background' at 0 (as SegDataset.class_names).
    overrides: {dataset name: text or [texts]}; several texts are embedded separately and averaged.
    Returns C-1 lists of strings (index j is class j + 1).
    """
    overrides = dict(overrides or {})
    out: list[list[str]] = []
    for name in list(class_names)[1:]:
        if name in overrides:
            v = overrides[name]
            texts = [v] if isinstance(v, str) else [str(t) for t in v]
        elif use_synonyms and name in CLASS_SYNONYMS:
            texts = [CLASS_SYNONYMS[name]]
        else:
            texts = [name.replace("_", " ")]
        if not texts or not all(t.strip() for t in texts):
            raise WSSSError(f"clip_cam.class_prompts: empty text for class '{name}'")
        out.append(texts)
    return out

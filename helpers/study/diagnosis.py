"""Diagnosis after compression (issue 12, notebook 06): does a disease classifier still name the disease on a
decoded leaf, and how many bits does it need?

The classifier is small and trained on this CPU in minutes: the ImageNet AlexNet convolutions that LPIPS
already loads offline (``metrics.lpips_network``, no download), frozen, and a linear layer over the 15
PlantVillage classes. Its features are the relu5 map average-pooled to 3x3 and max-pooled to 1x1, and the
spatial means of relu4 and relu3 (3,200 numbers per image, any image size), square-rooted and standardised
with the training split's mean and spread. Only the head is trained (AdamW, cross-entropy), on features
computed once and cached, so training costs two passes of AlexNet over the training split plus seconds.

Robustness: a linear probe trained on clean lab photos alone loses a third of its accuracy on leaves decoded
at ~0.5 bpp by any codec, which would make "bits for diagnosis" a measure of that probe's fragility. Each
training image is therefore seen a second time degraded in a codec-agnostic way (``degrade``: Gaussian blur,
down- and up-scaling, or noise), never by a codec of the study; adapting to one codec's artefacts is what
notebook 06's fine-tuning experiment (``train_on_decoded``) measures separately.

Potato: the codec never sees the Potato classes in training (``data.HOLDOUT``), but a diagnosis model must
know them, so the classifier is trained on all 15 classes. ``classifier_split`` keeps the codec's
train/val/test for every other class and splits the held-out crop by the same grouped hash (a leaf's photos
stay in one split), so the classifier's test split is the codec's test split plus the Potato leaves that hash
to "test", and results can be read per part (``part``: "pepper+tomato" or "potato").

    nice -n 19 python -m helpers diagnose train    # features (resumable, cached) -> head -> checkpoint + card
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from helpers import paths
from helpers.codec.errors import LeafCodecError
from helpers.data import dataset as data
from helpers.measures.metrics import RATE_WINDOW

CLASSIFIER = paths.CHECKPOINTS / "disease_classifier.pt"
CLASSIFIER_CARD = paths.CHECKPOINTS / "DISEASE_CLASSIFIER.md"
FEATURE_CACHE = paths.CACHE / "diagnose"
FEATURES = "alexnet-lpips relu5 avg3x3+max, relu4 mean, relu3 mean; square root"  # recorded in the checkpoint
N_FEATURES = 256 * 9 + 256 + 256 + 384
RECIPE = {"steps": 2400, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-2, "seed": 0}  # ~64 epochs
FINE_TUNE = {**RECIPE, "steps": 300}  # notebook 06: the shipped head adapted to a few hundred decoded leaves
SEEN, UNSEEN = "pepper+tomato", "potato"  # the ``part``s: crops the codec trained on, and its held-out crop


# ----- data ----------------------------------------------------------------------------------------------------
def classifier_split(r: data.Record) -> str:
    """The codec's split, except the held-out crop, which is split by the same grouped hash (see module doc)."""
    if r.split != data.HOLDOUT:
        return r.split
    return data.assign_split(f"{r.cls}/{r.group}", cls="")  # the manifest's key; cls="": no class hold-out


def part(r: data.Record) -> str:
    return UNSEEN if r.split == data.HOLDOUT else SEEN


def split_records(records: Sequence[data.Record], split: str, limit: int | None = None) -> list[data.Record]:
    """The classifier's ``split`` in manifest order; ``limit`` keeps that many, balanced over the classes
    (``ceil(limit / classes)`` per class, evenly spread within each, then dealt out class by class)."""
    chosen = [r for r in records if classifier_split(r) == split]
    if limit is None or limit >= len(chosen):
        return chosen
    by_class = {}
    for r in chosen:
        by_class.setdefault(r.cls, []).append(r)
    k = -(-limit // len(by_class))
    picks = []
    for mine in by_class.values():
        idx = np.unique(np.linspace(0, len(mine) - 1, min(k, len(mine))).round().astype(int))
        picks.append([mine[i] for i in idx])
    dealt = [p[rank] for rank in range(k) for p in picks if rank < len(p)]
    return dealt[:limit]


def degrade(img: np.ndarray, seed: int) -> np.ndarray:
    """A codec-agnostic degradation for training (seeded): Gaussian blur (sigma 0.5-2), down- and up-scaling
    (bicubic, to 25-60 %) or Gaussian noise (sigma 2-8 grey levels), by ``seed % 3``; noise also added to 30 %
    of the others."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    im = Image.fromarray(img)
    if seed % 3 == 0:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    elif seed % 3 == 1:
        scale, (w, h) = rng.uniform(0.25, 0.6), im.size
        im = im.resize((max(8, round(w * scale)), max(8, round(h * scale))), Image.BICUBIC).resize(
            (w, h), Image.BICUBIC
        )
    out = np.asarray(im, np.float32)
    if seed % 3 == 2 or rng.random() < 0.3:
        out = out + rng.normal(0, rng.uniform(2, 8), out.shape)
    return np.clip(out, 0, 255).round().astype(np.uint8)


# ----- features and head ---------------------------------------------------------------------------------------
@torch.no_grad()
def features(images: Sequence[np.ndarray], batch: int = 32) -> np.ndarray:
    """(N, N_FEATURES) float32 for uint8 RGB images; images of one batch must share a size."""
    from helpers.measures.metrics import lpips_network

    net = lpips_network()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.stack(images[i : i + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1
        h = net.net(net.scaling_layer(x))  # LPIPS's own input scaling, then AlexNet's relu1..relu5
        pooled = [F.adaptive_avg_pool2d(h.relu5, 3).flatten(1), h.relu5.amax((2, 3)), h.relu4.mean((2, 3)),
                  h.relu3.mean((2, 3))]  # fmt: skip
        out.append(torch.cat(pooled, 1).sqrt().numpy())  # square root: large activations dominate less
    return np.concatenate(out) if out else np.empty((0, N_FEATURES), np.float32)


class Head(torch.nn.Module):
    """Standardisation (training-split statistics) and one linear layer: features -> class logits."""

    def __init__(self, n_classes: int, n_features: int = N_FEATURES):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.linear = torch.nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)


def fit_head(
    x: np.ndarray, y: np.ndarray, n_classes: int, recipe: dict = RECIPE, init: Head | None = None
) -> Head:
    """Train a ``Head`` on features ``x`` and labels ``y`` for ``recipe["steps"]`` mini-batches (deterministic
    for a given seed). ``init``: start from that head's weights and keep its standardisation (fine-tuning)."""
    torch.manual_seed(recipe["seed"])
    head = Head(n_classes, x.shape[1])
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    if init is not None:
        head.load_state_dict(init.state_dict())
    else:
        head.mean.copy_(xt.mean(0))
        head.std.copy_(xt.std(0) + 1e-3)  # a dead unit (always 0) must not divide by zero
    opt = torch.optim.AdamW(head.linear.parameters(), recipe["lr"], weight_decay=recipe["weight_decay"])
    batches = iter(())
    for _ in range(recipe["steps"]):
        idx = next(batches, None)
        if idx is None:  # a new epoch: a fresh permutation
            batches = iter(torch.randperm(len(xt)).split(recipe["batch_size"]))
            idx = next(batches)
        loss = F.cross_entropy(head(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


@torch.no_grad()
def predict(head: Head, x: np.ndarray) -> np.ndarray:
    """Class indices for features ``x``."""
    return head(torch.from_numpy(np.asarray(x, np.float32))).argmax(1).numpy()


class Classifier:
    """The shipped classifier: ``predict(images)`` or ``predict_features(features)`` -> class indices."""

    def __init__(self, head: Head, classes: Sequence[str], meta: dict | None = None):
        self.head, self.classes, self.meta = head.eval(), list(classes), dict(meta or {})

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        return predict(self.head, x)

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.predict_features(features(images))

    def save(self, path: Path = CLASSIFIER) -> Path:
        from helpers.codec.fileio import atomic_write

        state = {
            "classes": self.classes,
            "features": FEATURES,
            "head": self.head.state_dict(),
            "meta": self.meta,
        }
        return atomic_write(path, lambda f: torch.save(state, f), force=True)

    @classmethod
    def load(cls, path: Path = CLASSIFIER) -> Classifier:
        if not Path(path).is_file():
            raise LeafCodecError(f"no classifier at {path} (train one: python -m helpers diagnose train)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("features") != FEATURES:
            raise LeafCodecError(f"{path} was trained on other features ({state.get('features')!r})")
        head = Head(len(state["classes"]))
        head.load_state_dict(state["head"])
        return cls(head, state["classes"], state["meta"])


# ----- scores --------------------------------------------------------------------------------------------------
def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def scores(y_true, y_pred, n_classes: int) -> dict:
    """Top-1 accuracy and macro-F1 (%) over the classes present in ``y_true`` (F1 of a class = 0 if never hit)."""
    m = confusion(y_true, y_pred, n_classes)
    present = m.sum(1) > 0
    tp = np.diag(m).astype(float)
    f1 = np.divide(2 * tp, m.sum(0) + m.sum(1), out=np.zeros(n_classes), where=(m.sum(0) + m.sum(1)) > 0)
    return {"accuracy": 100 * tp.sum() / m.sum(), "macro_f1": 100 * f1[present].mean()}


# ----- training (python -m helpers diagnose train) -------------------------------------------------------------
def cached_features(records: Sequence[data.Record], root: Path, degraded: bool = False, cache: Path = FEATURE_CACHE,
                    chunk: int = 512, log=print) -> np.ndarray:  # fmt: skip
    """Features of the images (``degraded``: of ``degrade(image, its index)``), computed in chunks saved under
    ``cache`` (a killed run resumes at the first missing chunk). The folder is named by a hash of the feature
    definition, ``degraded`` and the image list."""
    import hashlib

    from helpers.codec.fileio import atomic_write

    key = hashlib.sha256("\n".join([FEATURES, f"degraded={degraded}", *(r.path for r in records)]).encode())
    chunks = []
    for i in range(0, len(records), chunk):
        path = Path(cache) / key.hexdigest()[:16] / f"{i // chunk:04d}.npy"
        if not path.is_file():
            imgs = [data.read_image(Path(root) / r.path) for r in records[i : i + chunk]]
            x = features([degrade(img, i + k) if degraded else img for k, img in enumerate(imgs)])
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f, x=x: np.save(f, x), force=True)
            log(f"  features {min(i + chunk, len(records))}/{len(records)} -> {path}")
        chunks.append(np.load(path))
    return np.concatenate(chunks) if chunks else np.empty((0, N_FEATURES), np.float32)


def labels(names, classes: Sequence[str]) -> np.ndarray:
    """Class indices of class names."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[n] for n in names], np.int64)


def per_part(records: Sequence[data.Record], y_true, y_pred, n_classes: int) -> pd.DataFrame:
    """Accuracy and macro-F1 (%) over all images and per part (codec's test split / unseen crop)."""
    parts = np.array([part(r) for r in records])
    rows = []
    for name in ("all", SEEN, UNSEEN):
        keep = np.ones(len(parts), bool) if name == "all" else parts == name
        if keep.any():
            rows.append({"part": name, "images": int(keep.sum()),
                         **scores(np.asarray(y_true)[keep], np.asarray(y_pred)[keep], n_classes)})  # fmt: skip
    return pd.DataFrame(rows)


def train_classifier(root: Path | None = None, out: Path = CLASSIFIER, card: Path = CLASSIFIER_CARD,
          recipe: dict = RECIPE, log=print) -> Classifier:  # fmt: skip
    """Features of the classifier's train/val/test splits (cached), the head, its scores; checkpoint and card."""
    from helpers.study.report import machine

    t0 = time.time()
    root = data.check_data_dir(Path(root) if root else paths.data_dir())
    records = data.read_manifest(paths.MANIFEST)
    classes = sorted({r.cls for r in records})
    sets = {split: split_records(records, split) for split in ("train", "val", "test")}
    x = {}
    for split, recs in sets.items():
        log(f"{split}: {len(recs)} images")
        x[split] = cached_features(recs, root, log=log)
    log("train, degraded (see degrade):")
    x_train = np.concatenate([x["train"], cached_features(sets["train"], root, degraded=True, log=log)])
    y_train = labels([r.cls for r in sets["train"]], classes)
    head = fit_head(x_train, np.concatenate([y_train, y_train]), len(classes), recipe)
    clf = Classifier(head, classes)
    results = {split: per_part(sets[split], labels([r.cls for r in sets[split]], classes), clf.predict_features(x[split]),
                               len(classes)) for split in ("val", "test")}  # fmt: skip
    clf.meta = {"recipe": recipe, "images": {s: len(r) for s, r in sets.items()}, "minutes": (time.time() - t0) / 60,
                "machine": machine(), "torch": str(torch.__version__),
                "results": {s: df.to_dict("records") for s, df in results.items()}}  # fmt: skip
    clf.save(out)
    write_card(clf, card, out)
    log(f"wrote {out} and {card} in {clf.meta['minutes']:.1f} min")
    for split, df in results.items():
        log(f"{split}:\n{df.round(2).to_string(index=False)}")
    return clf


def write_card(clf: Classifier, card: Path = CLASSIFIER_CARD, checkpoint: Path = CLASSIFIER) -> Path:
    """The classifier's model card (Markdown), from what the checkpoint records."""
    from helpers.codec.fileio import atomic_write
    from helpers.study.tables import markdown_table

    m = clf.meta
    n_params = sum(p.numel() for p in clf.head.linear.parameters())
    results = "\n".join(
        f"**{split}**\n\n{markdown_table(pd.DataFrame(rows))}" for split, rows in m["results"].items()
    )
    text = f"""# Disease classifier (notebook 06, issue 12)

`{checkpoint.name}` ({checkpoint.stat().st_size / 1024:.0f} KiB), written by `python -m helpers diagnose train`.

* **Task.** The {len(clf.classes)} PlantVillage classes of pepper, potato and tomato leaves, to measure how
  much a codec's decoded image still supports a diagnosis (notebook 06). Not a plant-health tool: these are
  laboratory photos of single leaves on plain backgrounds.
* **Model.** The ImageNet AlexNet convolutions LPIPS loads offline (`metrics.lpips_network`), frozen; features
  {FEATURES} ({N_FEATURES} per image), standardised; one linear layer ({n_params:,} trained parameters).
* **Data.** The codec's split for pepper and tomato; the Potato classes, held out of the codec's training, are
  split by the same grouped hash (`diagnose.classifier_split`), so the classifier knows all classes. Images:
  {", ".join(f"{s} {n}" for s, n in m["images"].items())}; originals as published (JPEG). Each training image
  is also seen once degraded in a codec-agnostic way (`diagnose.degrade`: blur, down- and up-scaling or noise),
  so that compression is not the first loss of detail the classifier meets; no codec of the study is used.
* **Recipe.** {", ".join(f"{k} {v}" for k, v in m["recipe"].items())} (AdamW, cross-entropy) on features
  computed once and cached.
* **Training.** {m["minutes"]:.1f} min in all (mostly the AlexNet passes over the training split, original
  and degraded), niced, on {m["machine"]}, torch {m["torch"]}, shared with other jobs.

## Accuracy and macro-F1 on original images (%)

{results}"""
    return atomic_write(card, text.encode(), force=True)


# ----- notebook 06: the classifier on decoded images ----------------------------------------------------------
def study_codecs(checkpoints: dict[str, Path], stride: int = 1) -> list:
    """Every codec of the study (``baselines.classical_codecs`` and ours for each named checkpoint), each with
    every ``stride``-th setting."""
    from dataclasses import replace

    from helpers.study.baselines import classical_codecs
    from helpers.study.evaluate import learned_codecs

    classical = [replace(c, settings=c.settings[::stride]) for c in classical_codecs()]
    return [*classical, *learned_codecs(checkpoints, stride)]


def original_features(records: Sequence[data.Record], root: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows (one per image, ``codec`` "original": the published JPEG file and its bpp) and their features."""
    from helpers.measures.metrics import bpp

    imgs = [data.read_image(Path(root) / r.path) for r in records]
    rows = [{"image": r.path, "cls": r.cls, "part": part(r), "codec": "original", "setting": "file",
             "bytes": (Path(root) / r.path).stat().st_size,
             "bpp": bpp((Path(root) / r.path).stat().st_size, *img.shape[:2])} for r, img in zip(records, imgs)]  # fmt: skip
    return pd.DataFrame(rows), features(imgs)


def decoded_features(
    codecs, records: Sequence[data.Record], root: Path, progress: bool = True, workers: int = 1
):
    """Code every image with every codec at every setting (``evaluate.coded_images``, the study's one loop) and
    keep, per decoding, a row (image, class, part, codec, setting, bytes, bpp) and its features. ``workers`` > 1
    splits the images over forked processes (each codes on one thread, as the loop does)."""
    from helpers.study.evaluate import coded_images, forked_map

    if workers > 1 and len(records) > 1:
        parts = forked_map(lambda chunk: decoded_features(codecs, chunk, root, progress=False), list(records),
                           workers, progress=progress, desc="decoded features")  # fmt: skip
        return pd.concat([p[0] for p in parts], ignore_index=True), np.concatenate([p[1] for p in parts])

    rows, feats = [], []
    images = [Path(root) / r.path for r in records]
    for r, (name, _, coded) in zip(
        records, coded_images(codecs, images, root, progress=progress), strict=True
    ):
        feats.append(features([c.decoded for c in coded], batch=64))
        rows += [{"image": name, "cls": r.cls, "part": part(r), "codec": c.codec, "setting": c.setting,
                  "bytes": len(c.data), "bpp": c.bpp} for c in coded]  # fmt: skip
    return pd.DataFrame(rows), (np.concatenate(feats) if feats else np.empty((0, N_FEATURES), np.float32))


def accuracy_by_setting(rows: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Mean bpp, top-1 accuracy and macro-F1 (%) per codec and setting (``rows`` carry ``cls`` and ``pred``)."""
    out = []
    for (codec, setting), d in rows.groupby(["codec", "setting"], sort=False):
        y = labels(d["cls"], classes)
        out.append({"codec": codec, "setting": setting, "bpp": d["bpp"].mean(), "images": len(d),
                    **scores(y, d["pred"].to_numpy(), len(classes))})  # fmt: skip
    return pd.DataFrame(out)


def bits_for_diagnosis(summary: pd.DataFrame, reference: float, tolerance: float = 1.0) -> pd.DataFrame:
    """Per codec, the lowest-rate setting from which on every higher setting keeps accuracy within
    ``tolerance`` points of ``reference`` (the originals'); "–" and NaN where even its highest does not."""
    rows = []
    for codec, d in summary[summary.codec != "original"].groupby("codec", sort=False):
        d = d.sort_values("bpp")
        ok = (d["accuracy"] >= reference - tolerance).to_numpy()
        tail = np.logical_and.accumulate(ok[::-1])[::-1]  # this setting and every higher one are within
        row = {"codec": codec, "tolerance": tolerance, "setting": "–", "bpp": np.nan, "accuracy": np.nan,
               "macro_f1": np.nan}  # fmt: skip
        if tail.any():
            best = d.iloc[int(np.argmax(tail))]
            row.update({k: best[k] for k in ("bpp", "accuracy", "macro_f1")}, setting=str(best["setting"]))
        row["lowest_bpp_tried"] = d["bpp"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def nearest_settings(summary: pd.DataFrame, target_bpp: float) -> dict:
    """Per codec, the setting whose mean bpp is nearest ``target_bpp`` on a log scale."""
    out = {}
    for codec, d in summary[summary.codec != "original"].groupby("codec", sort=False):
        out[codec] = d["setting"].iloc[int(np.argmin(np.abs(np.log(d["bpp"].to_numpy() / target_bpp))))]
    return out


def per_class_accuracy(rows: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Accuracy (%) per class (rows) of the originals and of each codec at its setting in ``settings``;
    column names carry the codec's mean bpp there."""
    cols = {"original": rows[rows.codec == "original"]}
    for codec, setting in settings.items():
        d = rows[(rows.codec == codec) & (rows.setting == setting)]
        cols[f"{codec} @ {d['bpp'].mean():.2f} bpp"] = d
    table = pd.DataFrame({name: d.groupby("cls")["correct"].mean() * 100 for name, d in cols.items()})
    table.index.name = "class"
    return table.sort_values(table.columns[-1]) if len(table.columns) > 1 else table


def predict_rows(head: Head, rows: pd.DataFrame, x: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """``rows`` with the predicted class index (``pred``) and whether it is right (``correct``)."""
    pred = predict(head, x)
    return rows.assign(pred=pred, correct=pred == labels(rows["cls"], classes))


def train_on_decoded(clf: Classifier, codecs, settings: dict, train_records, root: Path, test_rows: pd.DataFrame,
                     test_x: np.ndarray, recipe: dict = FINE_TUNE, workers: int = 1) -> pd.DataFrame:  # fmt: skip
    """Does a classifier adapted to decoded images recover the accuracy? For each codec at its setting in
    ``settings``, the shipped head fine-tuned (``recipe``) on ``train_records`` decoded there, against the same
    fine-tuning on their originals (the control) and the shipped head itself. Each is scored on the test rows
    (``test_rows``/``test_x``) decoded at that setting and, for the decoded-tuned head, on the originals too."""
    from dataclasses import replace

    n, y_train = len(clf.classes), labels([r.cls for r in train_records], clf.classes)
    control = fit_head(original_features(train_records, root)[1], y_train, n, recipe, init=clf.head)
    chosen = [replace(c, settings=(settings[c.name],)) for c in codecs if c.name in settings]
    train_rows, train_x = decoded_features(chosen, train_records, root, workers=workers)

    def accuracy(head, codec, setting) -> float:
        keep = ((test_rows.codec == codec) & (test_rows.setting == setting)).to_numpy()
        return 100 * float(np.mean(predict(head, test_x[keep]) == labels(test_rows.cls[keep], clf.classes)))

    out = []
    for c in chosen:
        setting = c.settings[0]
        tuned = fit_head(train_x[(train_rows.codec == c.name).to_numpy()], y_train, n, recipe, init=clf.head)
        d = test_rows[(test_rows.codec == c.name) & (test_rows.setting == setting)]
        out.append({"codec": c.name, "setting": setting, "bpp": d.bpp.mean(), "images": len(d),
                    "shipped": accuracy(clf.head, c.name, setting),
                    "tuned_on_originals": accuracy(control, c.name, setting),
                    "tuned_on_decoded": accuracy(tuned, c.name, setting),
                    "tuned_on_decoded_originals": accuracy(tuned, "original", "file")})  # fmt: skip
    return pd.DataFrame(out)


# ----- figures -------------------------------------------------------------------------------------------------
def accuracy_figure(summary: pd.DataFrame, reference: dict, tolerance: float = 1.0, rate_window=RATE_WINDOW):
    """Accuracy and macro-F1 vs real bpp per codec (``plots.rd_curves``), the originals' values as a line and
    the ``tolerance`` band below the accuracy line (the "bits for diagnosis" criterion)."""
    from helpers.study import plots

    codecs = summary[summary.codec != "original"]
    fig = plots.rd_curves(codecs, metrics=("accuracy", "macro_f1"), rate_window=rate_window,
                          title="Disease classification on decoded test images")  # fmt: skip
    for ax, metric in zip(fig.axes, ("accuracy", "macro_f1")):
        ax.axhline(reference[metric], color="k", lw=1, ls=":", label="original images")
        if metric == "accuracy":
            ax.axhspan(reference[metric] - tolerance, reference[metric], color="k", alpha=0.08, lw=0)
        ax.set_ylabel({"accuracy": "top-1 accuracy (%)", "macro_f1": "macro-F1 (%)"}[metric])
    fig.axes[0].legend(fontsize=8)
    return fig


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], title: str = ""):
    """Row-normalised confusion matrix (true class in rows), counts written where non-zero."""
    import matplotlib.pyplot as plt

    from helpers.study.plots import short_label

    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(matrix):
        if n:
            ax.text(
                j, i, str(n), ha="center", va="center", fontsize=7, color="w" if share[i, j] > 0.5 else "k"
            )
    names = [short_label(c) for c in classes]
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m helpers diagnose", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train"])
    parser.add_argument("--out", type=Path, default=CLASSIFIER)
    parser.add_argument("--card", type=Path, default=CLASSIFIER_CARD)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # shares two cores with a codec training job: one core, niced, is its share
    train_classifier(out=args.out, card=args.card, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()

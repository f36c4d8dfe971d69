"""Tiny fake raw downloads with the real datasets' layouts and quirks (docs/datasets.md), for the
preparer tests. Images are 16x16 and written with PIL; everything is deterministic."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from PIL import Image

SIZE = 16


def write_image(path: Path, value: int = 128, mode: str = "RGB", fmt: str | None = None) -> Path:
    """A small solid image at ``path`` (format from the extension unless ``fmt``), its first row
    marked with a digest of the path's last five parts: no two files share their bytes, as in a
    real dataset (a copy of a training image among the test images is a leak kmat refuses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGBA":
        im = Image.new("RGBA", (SIZE, SIZE), (value % 256, 60, 200 - value % 100, 255))
    elif mode == "L":
        im = Image.new("L", (SIZE, SIZE), value % 256)
    else:
        im = Image.new("RGB", (SIZE, SIZE), (value % 256, 100, 50))
    mark = hashlib.sha256("/".join(path.parts[-5:]).encode()).digest()
    for x in range(SIZE):
        v = mark[x]
        im.putpixel((x, 0), v if mode == "L" else (v, v, v, 255) if mode == "RGBA" else (v, v, v))
    if fmt is None:
        ext = path.suffix.lower()
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}[ext]
    im.save(path, format=fmt)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    import openpyxl

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


# --------------------------------------------------------------------------------------- Derm7pt

DERM7PT_COLUMNS = [
    "case_num",
    "diagnosis",
    "seven_point_score",
    "pigment_network",
    "streaks",
    "pigmentation",
    "regression_structures",
    "dots_and_globules",
    "blue_whitish_veil",
    "vascular_structures",
    "level_of_diagnostic_difficulty",
    "elevation",
    "location",
    "sex",
    "management",
    "clinic",
    "derm",
    "case_id",
    "notes",
]
# (raw diagnosis, class key, image folder) x 6 cases each
DERM7PT_DIAGNOSES = [
    ("basal cell carcinoma", "basal_cell_carcinoma", "NEL"),
    ("clark nevus", "nevus", "Aal"),
    ("melanoma (in situ)", "melanoma", "Fbl"),
    ("DF/LT/MLS/MISC", "miscellaneous", "Gdl"),
    ("seborrheic keratosis", "seborrheic_keratosis", "Kal"),
]
DERM7PT_SPLIT = ["train", "train", "train", "val", "test", "test"]  # per class, by case order


def make_derm7pt(root: Path) -> dict:
    """``release_v0/{images,meta}`` with 30 cases in the official split plus one unindexed case.

    Quirks: meta.csv says ``.jpg`` where the file is ``.JPG`` (and the reverse), folder case differs.
    Returns {"root", "cases": [(case_num, class, split)]}.
    """
    rel = root / "release_v0"
    rows, cases, idx = [], [], {"train": [], "val": [], "test": []}
    n = 0
    for ci, (diag, cls, folder) in enumerate(DERM7PT_DIAGNOSES):
        for split in DERM7PT_SPLIT + (["none"] if ci == 0 else []):
            case = n + 1
            clinic_meta = f"{folder}/{folder}{case:03d}.jpg"
            derm_meta = f"{folder}/{folder.lower()}{case:03d}d.JPG"
            # on disk: clinic with upper-case extension for odd cases, derm always lower-case ext
            clinic_disk = clinic_meta[:-4] + (".JPG" if case % 2 else ".jpg")
            derm_disk = derm_meta[:-4] + ".jpg"
            if case % 3 == 0:  # folder spelled in another case on disk
                clinic_disk = clinic_disk.replace(folder + "/", folder.upper() + "/", 1)
                derm_disk = derm_disk.replace(folder + "/", folder.upper() + "/", 1)
            write_image(rel / "images" / clinic_disk, case)
            write_image(rel / "images" / derm_disk, case + 100)
            row = {c: "" for c in DERM7PT_COLUMNS}
            row.update(
                case_num=case,
                diagnosis=diag,
                clinic=clinic_meta,
                derm=derm_meta,
                case_id=f"c{case}",
                seven_point_score=0,
                location="back",
                sex="female",
                management="excision",
            )
            rows.append([row[c] for c in DERM7PT_COLUMNS])
            if split != "none":
                idx[split].append(n)
            cases.append((case, cls, split if split != "none" else "excluded"))
            n += 1
    write_csv(rel / "meta" / "meta.csv", DERM7PT_COLUMNS, rows)
    for split, fname in (
        ("train", "train_indexes.csv"),
        ("val", "valid_indexes.csv"),
        ("test", "test_indexes.csv"),
    ):
        write_csv(rel / "meta" / fname, ["indexes"], [[i] for i in idx[split]])
    return {"root": rel, "cases": cases}


# ------------------------------------------------------------------------------------------ MIDAS

MIDAS_COLUMNS = [
    None,
    "midas_record_id",
    "midas_file_name",
    "midas_iscontrol",
    "midas_distance",
    "midas_location",
    "midas_path",
    "midas_pathreport",
    "midas_gender",
    "midas_age",
    "midas_fitzpatrick",
    "midas_melanoma",
    "midas_ethnicity",
    "midas_race",
    "clinical_impression_1",
    "clinical_impression_2",
    "clinical_impression_3",
    "length_(mm)",
    "width_(mm)",
]
MIDAS_CLASSES = [
    ("malignant- ak", "actinic_keratosis"),
    ("malignant- bcc", "basal_cell_carcinoma"),
    ("malignant- melanoma", "melanoma"),
    ("benign-melanocytic nevus", "melanocytic_nevus"),
    ("malignant- scc", "squamous_cell_carcinoma"),
    ("benign-seborrheic keratosis", "seborrheic_keratosis"),
]
DISTANCES = ("dscope", "6in", "1ft")


def make_midas(root: Path, patients_per_class: int = 6) -> dict:
    """``release_midas.xlsx`` + ``raw_images/*.jpg`` (one lesion = dscope + 6in + 1ft images).

    Quirks: two patients with two lesions of different classes, control rows (no pathology),
    unlabelled non-control rows, out-of-set pathologies (incl. SCCis), virtual photos, label
    spacing variants, files stored as ``.jpeg`` or ``*_cropped.jpg`` while the sheet says ``.jpg``.
    Returns {"root", "expected": {modality: {class: n}}, "sccis": n lesions}.
    """
    rows: list[list[object]] = [MIDAS_COLUMNS]
    img_dir = root / "raw_images"
    counter = [0]
    expected = {"dermoscopy": {}, "clinical_15cm": {}}

    def lesion(
        record: int,
        path: str,
        location: str,
        control: str = "no",
        length: float = 5.0,
        distances=DISTANCES,
        label_variant: str | None = None,
    ) -> None:
        for dist in distances:
            counter[0] += 1
            k = counter[0]
            name = f"s-prd-{400000 + k}.jpg"
            disk = name
            if k % 7 == 0:
                disk = name[:-4] + ".jpeg"
            elif k % 11 == 0:
                disk = name[:-4] + "_cropped.jpg"
            write_image(img_dir / disk, k)
            shown = label_variant if label_variant is not None else path
            rows.append(
                [
                    k - 1,
                    record,
                    name,
                    control,
                    dist,
                    location,
                    shown,
                    "report text",
                    "F",
                    50,
                    2,
                    "no",
                    "x",
                    "y",
                    "1-benign-melanocytic nevus",
                    None,
                    None,
                    length,
                    4.0,
                ]
            )

    record = 1000
    for path, _cls in MIDAS_CLASSES:
        for p in range(patients_per_class):
            record += 1
            variant = path.replace("- ", " -") if p == 0 else None  # spacing variant of the same label
            lesion(record, path, f"arm {p}", label_variant=variant)
    # patients with two lesions of different classes
    lesion(2001, "malignant- bcc", "nose")
    lesion(2001, "benign-seborrheic keratosis", "back", length=7.0)
    lesion(2002, "malignant- melanoma", "leg")
    lesion(2002, "benign-melanocytic nevus", "chest")
    # controls (usually no pathology), unlabelled, out-of-set pathologies, virtual photos
    lesion(3001, "", "arm", control="yes")
    lesion(3002, "benign-melanocytic nevus", "arm", control="Yes")
    lesion(3003, "", "leg")
    lesion(3004, "benign-other", "leg")
    lesion(3005, "malignant- sccis", "scalp")
    lesion(3006, "malignant- sccis", "ear")
    lesion(3007, "malignant- bcc", "cheek", distances=("n/a - virtual",))
    for _path, cls in MIDAS_CLASSES:
        n = patients_per_class + (
            1
            if cls in ("basal_cell_carcinoma", "seborrheic_keratosis", "melanoma", "melanocytic_nevus")
            else 0
        )
        expected["dermoscopy"][cls] = n
        expected["clinical_15cm"][cls] = n
    write_xlsx(root / "release_midas.xlsx", rows)
    return {"root": root, "expected": expected, "sccis": 2}


# ------------------------------------------------------------------------------------------- DMID


def make_dmid(root: Path, nested: bool = False, underscore: bool = False) -> dict:
    """``Metadata.xlsx`` (30 legend rows, header-less table), ``TIFF Images/IMG###.tif`` (RGBA),
    ``ROI Masks/``, ``Reports/Img###.txt``.

    30 images: IMG001-010 normal, 011-020 benign, 021-030 malignant, with quirks: trailing spaces
    in ids and labels, IMG015 has a B and an M row (-> malignant), IMG012 two B rows, IMG009 has no
    classification and a report with BIRADS 1 (-> normal), IMG031 none and BIRADS 4 (skipped).
    Returns {"root", "labels": {id: class}, "skipped": ["IMG031"]}.
    """
    tiff = "TIFF_Images" if underscore else "TIFF Images"
    img_dir = root / tiff / tiff if nested else root / tiff
    rows: list[list[object]] = [[f"Legend line {i}: abbreviations and codes"] for i in range(28)]
    rows += [["CALC: calcification, CIRC: circumscribed mass, N: normal, B: benign, M: malignant"], []]
    rows.append([None] * 8)  # the header row pandas reads as 8 unnamed columns
    labels: dict[str, str] = {}
    code = {"normal": "N", "benign": "B", "malignant": "M"}
    for i in range(1, 32):
        image = f"IMG{i:03d}"
        cls = "normal" if i <= 10 else "benign" if i <= 20 else "malignant"
        if i == 31:
            cls = "skip"
        write_image(img_dir / f"{image}.tif", i, mode="RGBA")
        report = (
            f"Breast composition ACR B.\nBIRADS: {1 if cls == 'normal' else 2 if cls == 'benign' else 5}\n"
        )
        lab = code.get(cls, "")
        if i in (9, 31):
            lab = ""
            report = "Findings ... \nBI-RADS 1\n" if i == 9 else "Suspicious.\nBIRADS: 4\n"
        (root / "Reports").mkdir(parents=True, exist_ok=True)
        (root / "Reports" / f"Img{i:03d}.txt").write_text(report)
        ident = f"{image} " if i % 4 == 0 else image
        label_cell = f"{lab} " if (lab and i % 3 == 0) else lab
        abn = "NORM" if cls == "normal" else "CIRC"
        rows.append(
            [
                ident,
                "MLOLT",
                "F",
                abn,
                label_cell or None,
                100 if lab else None,
                200 if lab else None,
                30 if lab else None,
            ]
        )
        if i == 15:
            rows.append([image, "MLOLT", "F", "SPIC", "M", 120, 220, 20])
            cls = "malignant"
        if i == 12:
            rows.append([image, "MLOLT", "F", "CALC", "B ", 10, 20, 5])
        if cls != "normal" and i != 31:
            write_image(root / "ROI Masks" / f"{image}.tif", 255, mode="L")
        if cls != "skip":
            labels[image] = cls
    write_xlsx(root / "Metadata.xlsx", rows)
    return {"root": root, "labels": labels, "skipped": ["IMG031"]}


# ------------------------------------------------------------------------------------------- BUSI

BUSI_COUNTS = {"benign": 12, "malignant": 8, "normal": 6}


def make_busi(root: Path, counts: dict[str, int] | None = None, renamed: bool = False) -> dict:
    """``Dataset_BUSI_with_GT/{benign,malignant,normal}/<class> (N).png`` with ``_mask`` and
    ``_mask_1`` files (``renamed``: BiomedCoOp's ``benign_tumor`` etc. folders)."""
    counts = counts or BUSI_COUNTS
    base = root / "Dataset_BUSI_with_GT"
    folders = {"benign": "benign_tumor", "malignant": "malignant_tumor", "normal": "normal_scan"}
    for cls, n in counts.items():
        d = base / (folders[cls] if renamed else cls)
        for i in range(1, n + 1):
            write_image(d / f"{cls} ({i}).png", i, mode="L")
            write_image(d / f"{cls} ({i})_mask.png", 255, mode="L")
            if i == 2:
                write_image(d / f"{cls} ({i})_mask_1.png", 255, mode="L")
    return {"root": base, "counts": dict(counts)}


def write_biomedcoop_split(path: Path, assignment: dict[str, list[tuple[str, int]]]) -> Path:
    """A BiomedCoOp ``split_BUSI.json``: ``assignment[split] = [(class, image number), ...]``;
    BiomedCoOp's indices (benign 0, malignant 1, normal 2) and renamed folders."""
    index = {"benign": 0, "malignant": 1, "normal": 2}
    names = {"benign": "benign tumor", "malignant": "malignant tumor", "normal": "normal scan"}
    data = {
        split: [[f"{names[c].replace(' ', '_')}/{c} ({i}).png", index[c], names[c]] for c, i in items]
        for split, items in assignment.items()
    }
    path.write_text(json.dumps(data))
    return path


# ----------------------------------------------------------------------------------------- CC-CCII


def make_cc_ccii(root: Path, patients: int = 6, slices: int = 12) -> dict:
    """``{NCP,CP,Normal}/<patient>/<scan>/<slice>.png`` (NCP extracted one level down, as
    ``COVID19-1/NCP/...``), a few ``.jpg`` slices, ``lesions_slices.csv`` (slices 4-7 of every
    NCP/CP scan), ``unzip_filenames.csv``. Patient ids repeat across classes; every third patient
    has two scans. Returns {"root", "scans": {(cls, patient, scan): n_slices}, "lesions": n}."""
    scans: dict[tuple[str, str, str], int] = {}
    lesion_rows, unzip_rows = [], []
    for cls in ("NCP", "CP", "Normal"):
        top = root / "COVID19-1" / cls if cls == "NCP" else root / cls
        for p in range(1, patients + 1):
            patient = str(p)
            for s in range(1 if p % 3 else 2):
                scan = f"{p * 10 + s}"
                for k in range(slices):
                    ext = ".jpg" if (cls == "CP" and k == 5) else ".png"
                    write_image(top / patient / scan / f"{k:04d}{ext}", k, mode="L")
                scans[(cls, patient, scan)] = slices
                unzip_rows.append([f"{cls}-1.zip", cls, patient, scan, slices])
                if cls != "Normal":
                    lesion_rows += [[f"{cls}/{patient}/{scan}/{k:04d}.png"] for k in range(4, 8)]
    write_csv(root / "lesions_slices.csv", ["path"], lesion_rows)
    write_csv(
        root / "unzip_filenames.csv", ["zip_file", "label", "patient_id", "scan_id", "n_slice"], unzip_rows
    )
    return {"root": root, "scans": scans, "lesions": len(lesion_rows)}


# ---------------------------------------------------------------------------------- prashant268 CXR

CXR_COUNTS = {
    "train": {"COVID19": 8, "NORMAL": 10, "PNEUMONIA": 12},
    "test": {"COVID19": 3, "NORMAL": 3, "PNEUMONIA": 4},
}


def make_chestxray(root: Path) -> dict:
    """``Data/{train,test}/{COVID19,NORMAL,PNEUMONIA}/*`` with mixed extensions (jpg, jpeg, png,
    JPG), grayscale and RGB, and file names repeated between train and test."""
    base = root / "Data"
    exts = [".jpg", ".jpeg", ".png", ".JPG"]
    for split, per in CXR_COUNTS.items():
        for cls, n in per.items():
            for i in range(n):
                ext = exts[i % len(exts)]
                name = f"{cls}({i}){ext}" if cls != "COVID19" else f"{i}{ext}"
                fmt = "PNG" if ext == ".png" else "JPEG"
                write_image(base / split / cls / name, i, mode="L" if i % 2 else "RGB", fmt=fmt)
    (base / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0")
    return {"root": base, "counts": CXR_COUNTS}


# ------------------------------------------------------------------------------------ assertions


def read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_grouped(rows: list[dict[str, str]]) -> None:
    """No group_id in two splits."""
    seen: dict[str, str] = {}
    for r in rows:
        if r["split"] == "excluded":
            continue
        assert seen.setdefault(r["group_id"], r["split"]) == r["split"], (
            f"group {r['group_id']} in two splits"
        )


def assert_paired(a: list[dict[str, str]], b: list[dict[str, str]]) -> int:
    """Rows of two modalities with the same pair_id share their split; returns the number of pairs."""
    split_a: dict[str, set[str]] = {}
    for r in a:
        split_a.setdefault(r["pair_id"], set()).add(r["split"])
    n = 0
    for r in b:
        if r["pair_id"] in split_a:
            assert split_a[r["pair_id"]] == {r["split"]}, f"pair {r['pair_id']} split differently"
            n += 1
    return n


def split_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["split"]] = out.get(r["split"], 0) + 1
    return out

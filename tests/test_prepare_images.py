"""Image loading for prepared datasets: JPEG/PNG/TIFF (RGBA, 16-bit), grayscale, DICOM, errors."""

import numpy as np
import pytest
from PIL import Image

from kmat.data.images import ImageError, load_image


def test_rgba_tiff_to_rgb(tmp_path):
    p = tmp_path / "IMG001.tif"
    Image.new("RGBA", (16, 12), (10, 20, 30, 255)).save(p)
    im = load_image(p)
    assert im.mode == "RGB" and im.size == (16, 12) and im.getpixel((0, 0)) == (10, 20, 30)


def test_16bit_tiff_scaled_to_8bit(tmp_path):
    arr = np.linspace(1000, 4000, 16 * 16).reshape(16, 16).astype(np.uint16)
    p = tmp_path / "deep.tif"
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I;16")
    out = np.asarray(load_image(p))
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255
    assert np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)  # monotone mapping


@pytest.mark.parametrize(
    "mode,ext", [("L", ".png"), ("L", ".jpg"), ("P", ".png"), ("LA", ".png"), ("1", ".png")]
)
def test_grayscale_palette_alpha_to_rgb(tmp_path, mode, ext):
    p = tmp_path / f"x{ext}"
    Image.new(mode, (8, 8)).save(p)
    assert load_image(p).mode == "RGB"


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match="broken.png: unreadable or corrupt"):
        load_image(bad)
    with pytest.raises(ImageError, match="absent.jpg: image file not found"):
        load_image(tmp_path / "absent.jpg")


def _write_dicom(path, arr, **tags):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = tags.pop("PhotometricInterpretation", "MONOCHROME2")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = arr.astype(np.uint16).tobytes()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def test_dicom_windowing_to_8bit(tmp_path):
    arr = np.tile(np.arange(0, 4096, 256, dtype=np.uint16), (16, 1))  # 0..3840 per row
    p = _write_dicom(tmp_path / "IMG001.dcm", arr, WindowCenter=1000, WindowWidth=1000)
    out = np.asarray(load_image(p))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    row = out[0, :, 0]
    assert row[0] == 0 and row[2] == 3 and row[3] == 68 and row[6] == 255  # window 500..1500
    inv = _write_dicom(
        tmp_path / "inv", arr, PhotometricInterpretation="MONOCHROME1"
    )  # no suffix: DICM magic
    out = np.asarray(load_image(inv))[0, :, 0]
    assert out[0] == 255 and out[-1] == 0  # min-max without a window, inverted


def test_corrupt_dicom_names_the_file(tmp_path):
    pytest.importorskip("pydicom")
    p = tmp_path / "bad.dcm"
    p.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    with pytest.raises(ImageError, match="bad.dcm"):
        load_image(p)

"""The pretrained face recogniser (privjax.attacks.face_recognition) on a few rendered faces, and
its identification and verification rules on hand-built embeddings."""

import math

import numpy as np
import pytest

from privjax.attacks import face_recognition as fr
from privjax.data import face_renderer
from privjax.errors import EvalError

pytestmark = pytest.mark.unit


@pytest.fixture(scope='module')
def faces():
  f = face_renderer.generate_faces(num_identities=3, images_per_identity=2, image_size=64, seed=0)
  return f['image'].astype(np.float32) / 255.0, f['identity']


@pytest.fixture(scope='module')
def embeddings(faces):
  return fr.FaceRecognizer().embed(faces[0])


def test_descriptors_are_deterministic_and_identify_the_originals(faces, embeddings):
  images, labels = faces
  assert embeddings.shape == (6, 128) and embeddings.dtype == np.float32
  np.testing.assert_array_equal(fr.FaceRecognizer().embed(images[:3]), embeddings[:3])
  # dlib's descriptors are not normalised: about 1.3 on faces (1.24-1.40 on LFW photos).
  assert np.all(
      (np.linalg.norm(embeddings, axis=1) > 0.8) & (np.linalg.norm(embeddings, axis=1) < 2)
  )
  distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=2)
  assert distances[~np.eye(6, dtype=bool)].min() > 0.1  # distinct faces, distinct descriptors
  result = fr.identify(embeddings, labels, embeddings, labels)
  assert result['top1'] == 1.0 and result['top1_se'] == 0.0
  assert (result['num_probes'], result['num_people'], result['num_gallery']) == (6, 3, 6)
  assert result['chance_top1'] == pytest.approx(1 / 3) and result['chance_top5'] == 1.0
  # uint8 input is the same image as its float form
  np.testing.assert_array_equal(
      fr.FaceRecognizer().embed(np.rint(images[:2] * 255).astype(np.uint8)), embeddings[:2]
  )


def test_the_whole_image_and_a_crop_map_their_corners_to_the_chip_corners():
  side = 64
  ramp = np.arange(side) * 4  # pixel value = 4 x coordinate, so a chip pixel says where it is from
  image = np.stack(
      [np.broadcast_to(ramp[None, :], (side, side)), np.broadcast_to(ramp[:, None], (side, side))]
      + [np.zeros((side, side))],
      axis=-1,
  ).astype(np.uint8)[None]
  # dlib truncates its bilinear values to uint8: a chip pixel may be 1 below the image's.
  corners = lambda chip: chip[[0, 0, -1, -1], [0, -1, 0, -1]].astype(int)
  chip = fr.FaceRecognizer(fr.WHOLE_IMAGE).chips(image)[0]
  assert chip.shape == (150, 150, 3)
  pixels = image[0][[0, 0, -1, -1], [0, -1, 0, -1]].astype(int)
  np.testing.assert_allclose(corners(chip), pixels, atol=1)
  # The centred half: pixel centres 16 .. 47 of 64.
  half = fr.Alignment(center_x=0.5, center_y=0.5, side=0.5, angle=0.0)
  chip = fr.FaceRecognizer(half).chips(image)[0]
  pixels = image[0][[16, 16, 47, 47], [16, 47, 16, 47]].astype(int)
  np.testing.assert_allclose(corners(chip), pixels, atol=1)


def test_the_learned_crop_is_dlibs_own_chip_and_averages_detected_faces(faces):
  dlib, _, landmarks, detector = fr._dlib_models()
  images = np.rint(faces[0] * 255).astype(np.uint8)
  detected = [i for i in range(6) if detector(images[i], 2)]
  assert detected
  for i in detected:  # fitted on one photo, the crop cuts the chip dlib cuts for its landmarks
    shape = landmarks(images[i], detector(images[i], 2)[0])
    reference = dlib.get_face_chip(images[i], shape, 150, 0.25).astype(int)
    chip = fr.FaceRecognizer(fr.fit_alignment(images[i : i + 1])).chips(images[i : i + 1])[0]
    np.testing.assert_allclose(chip, reference, atol=1)
  alignment = fr.fit_alignment(faces[0])
  assert alignment.num_fitted == len(detected)
  assert 0.3 < alignment.center_x < 0.7 and 0.3 < alignment.center_y < 0.7
  assert 0.2 < alignment.side < 1.5 and abs(alignment.angle) < 0.5
  with pytest.raises(EvalError, match='no face was detected on any of the 2 images'):
    fr.fit_alignment(np.full((2, 64, 64, 3), 0.5, np.float32))


def test_without_the_extra_the_error_is_one_line_naming_it(monkeypatch, faces):
  fr._dlib_models.cache_clear()
  monkeypatch.setattr(fr, 'find_spec', lambda name: None)
  try:
    with pytest.raises(EvalError) as err:
      fr.FaceRecognizer().embed(faces[0][:1])
  finally:
    fr._dlib_models.cache_clear()
  assert '\n' not in str(err.value) and 'pip install privjax[face]' in str(err.value)


def test_bad_images_are_refused():
  with pytest.raises(EvalError, match=r'\[N, S, S, 3\]'):
    fr.FaceRecognizer().embed(np.zeros((2, 64, 32, 3)))


def _unit(i):
  v = np.zeros(128, np.float32)
  v[i] = 1.0
  return v


def test_scores_are_the_distance_to_the_nearest_gallery_embedding_of_each_person():
  gallery = np.stack([_unit(0), -_unit(0), _unit(1)])  # person 7 twice, person 3 once
  scores, class_map = fr.person_scores((-0.9 * _unit(0))[None], gallery, [7, 7, 3])
  assert list(class_map.classes) == [3, 7]
  # nearest of person 7 is -e0 at 0.1 (the mean of its two would be 0 away by 0.9)
  np.testing.assert_allclose(scores, [[-math.sqrt(0.81 + 1), -0.1]], rtol=1e-6)


def test_identification_and_tar_at_far_by_hand():
  # People 0, 1, 2 enrolled at e0, e1, e2; probe i is t_i * e_(own person): own distance |1 - t|,
  # distance to each other person sqrt(t^2 + 1).
  gallery, gallery_labels = np.stack([_unit(0), _unit(1), _unit(2)]), [0, 1, 2]
  own, t = [0, 1, 2, 0], [1.0, 0.5, -0.01, -0.6]
  probes = np.stack([ti * _unit(p) for p, ti in zip(own, t)])
  # genuine scores -0, -0.5, -1.01, -1.6; impostors (two per probe) -1.414, -1.118, -1.00005,
  # -1.166: sorted, -1.00005 x2, -1.118 x2, -1.166 x2, -1.414 x2.
  ident = fr.identify(probes, own, gallery, gallery_labels)
  assert ident['top1'] == 0.5 and ident['top1_se'] == pytest.approx(0.25)  # probes 3, 4 missed
  assert ident['top5'] == 1.0 and ident['num_unknown'] == 0  # top-5 of 3 people is top-3
  tar = fr.verify(probes, own, gallery, gallery_labels, fars=(0.125, 0.25))
  # FAR 1/8: the threshold is the 2nd highest impostor score, -1.00005 (its tie passes neither)
  assert tar['0.125']['tar'] == 0.5 and tar['0.125']['far'] == 0.0
  assert tar['0.125']['threshold'] == pytest.approx(-math.sqrt(1.0001), rel=1e-6)
  # FAR 2/8: the 3rd highest, -1.118; probe 3 (-1.01) now passes, probe 4 (-1.6) never
  assert tar['0.25']['tar'] == 0.75 and tar['0.25']['far'] == 0.25
  assert (tar['0.25']['num_genuine'], tar['0.25']['num_impostor']) == (4, 8)
  with pytest.raises(ValueError, match='must be in the gallery'):
    fr.verify(probes, [0, 1, 2, 5], gallery, gallery_labels)

"""``dcac.track`` (``from dcac import track``): a dcac model as the appearance model of a multi-object tracker (no detector included).

    import dcac
    from dcac import track

    model = dcac.load("runs/demo/dcac")
    cam1 = track.tracklet_features(model, "cam1/gt/gt.txt", "cam1/img1", camera="cam1")
    cam2 = track.tracklet_features(model, "cam2/gt/gt.txt", "cam2/img1", camera="cam2")
    for match in track.match_tracklets(cam1, cam2, topk=3):
        print(match.query_track, match.gallery_tracks, match.distances)

See ``dcac.inference.mot`` (the file format) and ``dcac.inference.tracklets`` (pooling and search).
"""

from dcac.inference.mot import MOTBox, read_mot
from dcac.inference.tracklets import TrackletMatch, Tracklets, detection_features, match_tracklets, tracklet_features

__all__ = [
    "MOTBox",
    "read_mot",
    "Tracklets",
    "TrackletMatch",
    "tracklet_features",
    "match_tracklets",
    "detection_features",
]

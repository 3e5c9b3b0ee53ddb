"""Machine-learning analytics: web request classifier, DGA, DNS tunnelling,
Spot-style suspicious connects (LDA) and RITA-style beaconing.

Models are arrays plus JSON metadata (`modelfile`), scored vectorised on
polars/numpy columns; per-event models run in the stream as detectors,
window models (tunnelling, LDA, beaconing) run as scheduled jobs.
"""

#: model kind -> module (the contract of a kind module: `lightsoc.commands.ml`)
KINDS = {
    "web": "lightsoc.detect.ml.web",
    "dga": "lightsoc.detect.ml.dga",
    "tunnel": "lightsoc.detect.ml.tunnel",
    "lda": "lightsoc.detect.ml.lda",
    "beacon": "lightsoc.detect.ml.beacon",
}

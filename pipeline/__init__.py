"""facepipe: the Amazon Rekognition face-collection API, offline, on real models.

Import layout (data flows one way):
  protocol/ and cli/  ->  service/  ->  store/ and vision/
"""

__version__ = "0.1.0"

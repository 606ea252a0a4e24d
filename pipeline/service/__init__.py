"""The operations, independent of HTTP and argv.

CONTRACT used by protocol/, cli/ and jobs/:

    from pipeline.service import FacePipe
    fp = FacePipe(settings)                     # or FacePipe() for Settings.from_env()
    response = fp.call("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": [...]})

``call`` takes the operation's botocore name and the request as boto3 takes it (blobs as
bytes), validates it against botocore's Rekognition model plus the constraints botocore does not
check (max lengths, list sizes, ranges, patterns), runs it, and returns the response as boto3
returns it (without ResponseMetadata; timestamps as datetime). Errors are
pipeline.errors.RekognitionError subclasses.
"""

"""The face engine: the one object the service layer uses for everything visual.

CONTRACT (implemented in this package; the service layer relies on exactly this):

    engine = get_engine(settings)            # cached per (model_pack, provider, threads)
    engine.model_version -> str              # FaceModelVersion reported by the API
    engine.embedding_dim -> int              # D of every vector
    image = engine.decode(data: bytes)       # DecodedImage; raises InvalidImageFormatException,
                                             # ImageTooLargeException, InvalidParameterException
    faces = engine.analyze(image, max_faces=100, embed=True)
                                             # list[DetectedFace], largest box first
    many = engine.analyze_many(images, max_faces=100)   # faces of many images, embeddings batched
    engine.similarity(cosine) -> float       # calibrated 0-100 Similarity/Confidence
    engine.cosine_at(similarity) -> float    # inverse: the cosine whose Similarity is `similarity`
    engine.quality_reasons(face, level) -> list[str]
                                             # IndexFaces QualityFilter reasons for one face
                                             # (level NONE/AUTO/LOW/MEDIUM/HIGH; [] = passes)
"""

"""Serving a trained TIGER model: load a run or a self-contained model folder, answer in the data set's own ids.

    from serving import load_recommender
    rec = load_recommender("out/decoder_cpu/amazon-beauty")   # or a folder written by rec.export(...)
    for r in rec.recommend(["B004756YJA", "B004ZT0SSG"], k=5):
        print(r.item_id, f"{r.score:.3f}", r.title)

Nothing of the product imports this package; entry points (recommend.py) and your code do.
"""
from serving.model_folder import FORMAT_VERSION
from serving.recommender import Recommendation, Recommender, load_recommender

__all__ = ["FORMAT_VERSION", "Recommendation", "Recommender", "load_recommender"]

"""The render engine over diffusers.

- params.py     Txt2ImgParams and their validation (no torch import: cheap for web and CLI)
- samplers.py   AUTOMATIC1111 sampler names -> diffusers schedulers
- engine.py     RenderEngine: pipelines loaded from local safetensors folders, cached, seeded
- png.py        PNG with A1111 "parameters" text and farm metadata; thumbnails
- tiny_model.py a tiny random-weight SD / SDXL model built from configs/, for tests and demos
"""

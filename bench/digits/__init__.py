"""The digit-set benchmark: every cooperation mode on the committed demo set (demo_set/), run the way a
user's run goes: a headless ComfyUI, stock loaders, API prompts over HTTP, judged by classifiers
trained on held-out digits. See bench/README_digits.md."""

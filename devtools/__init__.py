"""Development support for the pack's tests, benchmarks and commands (never shipped: outside the
registry archive by .comfyignore). One place for what they all need: where ComfyUI is and how it is
imported (host.py), the tiny model generators (tiny_models.py, reliability_models.py), one HTTP
client (client.py) and one server launcher (server.py).

Imports point one way: tests/, bench/ and scripts/ import devtools; devtools imports none of them.
"""

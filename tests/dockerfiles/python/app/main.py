import json

with open("/app/data.json") as fh:
    print(json.load(fh))

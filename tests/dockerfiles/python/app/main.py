import json
print(json.load(open("/app/data.json")))

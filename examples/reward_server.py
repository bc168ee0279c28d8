import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Scores(BaseHTTPRequestHandler):
    def do_POST(self):
        items = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["items"]
        scores = [float("\\boxed{" in item["response"]) for item in items]  # your reward here
        body = json.dumps({"scores": scores}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8000), Scores).serve_forever()

"""A small browser-like HTTP client (cookies, CSRF) for talking to a real server."""

import http.cookiejar
import json
import re
import urllib.parse
import urllib.request


class StudioClient:
    def __init__(self, base_url):
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def cookie(self, name):
        return next((c.value for c in self.cookies if c.name == name), None)

    def get(self, path):
        with self.opener.open(self.base_url + path, timeout=30) as response:
            return response.status, response.read()

    def post(self, path, data, headers=None):
        request = urllib.request.Request(
            self.base_url + path,
            data=urllib.parse.urlencode(data).encode(),
            headers={
                "X-CSRFToken": self.cookie("csrftoken") or "",
                "Referer": self.base_url + path,
                **(headers or {}),
            },
        )
        with self.opener.open(request, timeout=30) as response:
            return response.status, response.read()

    def log_in(self, username, password):
        _, page = self.get("/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
        self.post("/login/", {"username": username, "password": password,
                              "csrfmiddlewaretoken": token})
        if not self.cookie("sessionid"):
            raise AssertionError(f"log in as {username} failed")

    def get_json(self, path):
        return json.loads(self.get(path)[1])

    def websocket_headers(self):
        return {"Cookie": f"sessionid={self.cookie('sessionid')}", "Origin": self.base_url}

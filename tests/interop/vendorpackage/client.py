from jumpstarter.client import DriverClient


class CustomClient(DriverClient):
    def greet(self, name):
        return self.call("greet", name)

    def count(self, n):
        return list(self.streamingcall("count", n))

    def echo(self, data: bytes) -> bytes:
        with self.stream() as s:
            s.send(data)
            return s.receive()

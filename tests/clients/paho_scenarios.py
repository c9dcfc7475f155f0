"""Scenarios run by the integration tests with the Eclipse Paho Python
client (paho-mqtt 2.x) against a running Sluice broker.

Usage: paho_scenarios.py PORT VERSION SCENARIO
  VERSION  311 | 5
  SCENARIO roundtrip | retained | will | persistent | will-victim

Prints "ok SCENARIO" and exits 0 on success; exits non-zero with a message
otherwise. Every wait is bounded.
"""

import os
import queue
import subprocess
import sys
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

HOST = "127.0.0.1"
TIMEOUT = 10.0


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


class Client:
    """A paho client with a queue of received messages."""

    def __init__(self, port, version, client_id, clean=True, expiry=None, will=None):
        self.version = version
        proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
        kwargs = {"client_id": client_id, "protocol": proto}
        if version != "5":
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        self.connack = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, rc, p: self.acks.put(("sub", mid, rc))
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.put(("pub", mid, rc))
        self.c.on_connect = lambda c, u, flags, rc, p: self.connack.put((flags, rc))
        if will:
            self.c.will_set(will[0], will[1], qos=1)
        props = None
        if version == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry or 0
            self.c.connect(HOST, port, keepalive=30, clean_start=clean, properties=props)
        else:
            self.c.connect(HOST, port, keepalive=30)
        self.c.loop_start()
        flags, rc = self.wait(self.connack, "CONNACK")
        if rc != 0 and not (hasattr(rc, "is_failure") and not rc.is_failure):
            fail(f"{client_id}: CONNACK {rc}")
        self.session_present = flags.session_present

    def wait(self, q, what):
        try:
            return q.get(timeout=TIMEOUT)
        except queue.Empty:
            fail(f"timed out waiting for {what}")

    def subscribe(self, topic, qos):
        _, mid = self.c.subscribe(topic, qos)
        while True:
            kind, got, rc = self.wait(self.acks, "SUBACK")
            if kind == "sub" and got == mid:
                return rc

    def publish(self, topic, payload, qos, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=TIMEOUT)
        if not info.is_published():
            fail(f"publish to {topic} not acknowledged")

    def message(self):
        return self.wait(self.messages, "a message")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def roundtrip(port, v):
    sub = Client(port, v, uid("sub"))
    pub = Client(port, v, uid("pub"))
    for qos in (0, 1, 2):
        topic = f"paho/{v}/q{qos}"
        sub.subscribe(topic, qos)
        pub.publish(topic, f"m{qos}".encode(), qos)
        m = sub.message()
        if m.topic != topic or m.payload != f"m{qos}".encode() or m.qos != qos:
            fail(f"got {m.topic} {m.payload} qos {m.qos}")
    sub.close()
    pub.close()


def retained(port, v):
    topic = f"paho/{v}/retained/{uuid.uuid4().hex[:6]}"
    pub = Client(port, v, uid("pub"))
    pub.publish(topic, b"kept", 1, retain=True)
    pub.close()
    sub = Client(port, v, uid("sub"))
    sub.subscribe(topic, 1)
    m = sub.message()
    if m.payload != b"kept" or not m.retain:
        fail(f"retained: {m.payload} retain={m.retain}")
    sub.close()


def will(port, v):
    topic = f"paho/{v}/will/{uuid.uuid4().hex[:6]}"
    watcher = Client(port, v, uid("watcher"))
    watcher.subscribe(topic, 1)
    # Another process connects with a will and dies without DISCONNECT.
    victim = subprocess.run(
        [sys.executable, __file__, str(port), v, "will-victim", topic], timeout=TIMEOUT
    )
    if victim.returncode != 0:
        fail("victim process failed")
    m = watcher.message()
    if m.payload != b"died":
        fail(f"will payload {m.payload}")
    watcher.close()


def will_victim(port, v, topic):
    Client(port, v, uid("victim"), will=(topic, b"died"))
    os._exit(0)


def persistent(port, v):
    cid = uid("durable")
    topic = f"paho/{v}/queue/{cid}"
    first = Client(port, v, cid, clean=False, expiry=60)
    first.subscribe(topic, 1)
    first.close()
    pub = Client(port, v, uid("pub"))
    for i in range(3):
        pub.publish(topic, f"q{i}".encode(), 1)
    pub.close()
    again = Client(port, v, cid, clean=False, expiry=60)
    if not again.session_present:
        fail("session not present")
    got = sorted(again.message().payload for _ in range(3))
    if got != [b"q0", b"q1", b"q2"]:
        fail(f"queued: {got}")
    again.close()


def main():
    port, version, scenario = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if scenario == "will-victim":
        will_victim(port, version, sys.argv[4])
    {"roundtrip": roundtrip, "retained": retained, "will": will, "persistent": persistent}[scenario](
        port, version
    )
    print(f"ok {scenario}")


if __name__ == "__main__":
    main()

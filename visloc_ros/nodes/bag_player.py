"""Publish a rosbag2's messages over DDS with their recorded timing (for machines without ``ros2 bag``).

Messages go out as recorded (raw CDR); with ``restamp`` the header stamp of every message that has one is
set to the publishing time, so a receiver can measure stamp-to-receipt latency.
"""
from __future__ import annotations

import importlib
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from ..tools.bag import iter_messages, topics, typestore


def _msg_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def play(bag: str, rate: float = 1.0, loop: bool = False, remaps: dict[str, str] | None = None,
         only: list[str] | None = None, restamp: bool = False, reliable: bool = False, log=print,
         wait_for_subscribers: float = 0.0) -> int:
    """Returns the number of messages published."""
    remaps = remaps or {}
    info = topics(bag)
    wanted = [t for t in info if only is None or t in only]
    rclpy.init()
    node = rclpy.create_node("visloc_bag_player")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
    pubs = {t: node.create_publisher(_msg_class(info[t][0]), remaps.get(t, t), qos) for t in wanted}
    ts = typestore() if restamp else None
    sent = 0
    try:
        # let subscribers discover the publishers: a fixed second, or until every topic has a subscriber
        if wait_for_subscribers > 0:
            end = time.monotonic() + wait_for_subscribers
            while time.monotonic() < end and not all(p.get_subscription_count() > 0 for p in pubs.values()):
                time.sleep(0.05)
            time.sleep(0.5)
        else:
            time.sleep(1.0)
        while True:
            t0_bag = t0_wall = None
            for m in iter_messages(bag, wanted):
                if t0_bag is None:
                    t0_bag, t0_wall = m.t_ns, time.monotonic()
                due = t0_wall + (m.t_ns - t0_bag) / 1e9 / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                raw = m.raw
                if restamp:
                    msg = ts.deserialize_cdr(raw, m.msgtype)
                    if hasattr(msg, "header"):
                        now = time.time_ns()
                        msg.header.stamp.sec, msg.header.stamp.nanosec = now // 1_000_000_000, now % 1_000_000_000
                        raw = ts.serialize_cdr(msg, m.msgtype)
                pubs[m.topic].publish(bytes(raw))
                sent += 1
            if not loop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.shutdown()
    log(f"published {sent} messages from {bag} on {len(pubs)} topics")
    return sent

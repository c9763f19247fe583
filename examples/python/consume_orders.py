"""Read orderflow events with the standard Confluent Python client.

No orderflow code involved: records are Confluent wire format (magic byte 0,
4-byte schema id, Avro body) and the AvroDeserializer fetches each writer
schema from the registry by id.

    pip install 'confluent-kafka[avro]'
    python examples/python/consume_orders.py [--topic order-events] [--max 10] [--json]

The registry asks who you are (HTTP Basic): give a user in the URL
(http://user:password@host:8081) or in SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO
(user:password); scripts/up writes its users to
.orderflow/registry-users.properties.

With --json, every record is printed as one JSON object per line (topic,
partition, offset, key, headers and the decoded event), for scripts and tests.
"""

import argparse
import json
import os
import sys
from urllib.parse import unquote, urlsplit, urlunsplit

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def registry_config(url: str, user_info: str | None) -> dict:
    """The registry client's settings: credentials in the URL become
    basic.auth.user.info, so they are sent as HTTP Basic authentication."""
    parts = urlsplit(url)
    if parts.username is not None:
        user_info = user_info or f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    config = {"url": url}
    if user_info:
        config["basic.auth.user.info"] = user_info
    return config


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--registry", default=os.environ.get("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081"))
    p.add_argument("--topic", default="order-events")
    p.add_argument("--group", default="python-example")
    p.add_argument("--max", type=int, default=10, help="stop after this many records")
    p.add_argument("--idle-timeout", type=float, default=10.0, help="stop after this many idle seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object per record")
    p.add_argument("--username", default=os.environ.get("KAFKA_SASL_USERNAME"),
                   help="SASL/SCRAM-SHA-512 user over TLS (docker compose: reader)")
    p.add_argument("--password", default=os.environ.get("KAFKA_SASL_PASSWORD"))
    p.add_argument("--ca", default=os.environ.get("KAFKA_SSL_CA_LOCATION"),
                   help="CA certificate of the broker (PEM)")
    args = p.parse_args()

    registry = registry_config(args.registry, os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"))
    deserialize = AvroDeserializer(SchemaRegistryClient(registry))
    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
    }
    if args.username:
        config.update({
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": args.username,
            "sasl.password": args.password or "",
        })
        if args.ca:
            config["ssl.ca.location"] = args.ca
    consumer = Consumer(config)
    consumer.subscribe([args.topic])
    seen = 0
    try:
        while seen < args.max:
            msg = consumer.poll(args.idle_timeout)
            if msg is None:
                break
            if msg.error():
                print(f"error: {msg.error()}", file=sys.stderr)
                continue
            event = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            headers = {k: (v.decode() if v else None) for k, v in (msg.headers() or [])}
            if args.json:
                record = {
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": msg.key().decode() if msg.key() is not None else None,
                    "headers": headers,
                    "event": event,
                }
                # UUIDs and datetimes (Avro logical types) print as strings.
                print(json.dumps(record, default=str), flush=True)
                seen += 1
                continue
            print(f"{msg.topic()}[{msg.partition()}]@{msg.offset()} key={msg.key().decode()} "
                  f"{event['eventType']} eventId={event['eventId']} correlationId={event['correlationId']} "
                  f"timestamp={event['timestamp'].isoformat()} data={event['data']} "
                  f"traceparent={headers.get('traceparent')}")
            seen += 1
    finally:
        consumer.close()
    return 0 if seen else 1


if __name__ == "__main__":
    sys.exit(main())

"""mllp_baseline.py: the baseline of `make bench`'s ingest table. An MLLP
server on python-hl7's asyncio streams (Debian python3-hl7, hl7.mllp) that
parses each message and answers AA (or CA in enhanced mode) with
Message.create_ack, keeping nothing: what a receiver costs before anything
is made durable. Also a stand-in server for developing clients.

Run with /usr/bin/python3 (python3-hl7 is a Debian package).
usage: mllp_baseline.py [--host H] [--port P] [--cert F --key F]
                        [--commit-ack] [--ack-code CODE]
Prints "listening HOST:PORT" on stdout once it accepts connections (with
--port 0 the port is chosen by the system); runs until SIGTERM or SIGINT.
"""
import argparse
import asyncio
import signal
import ssl
import sys

try:
    import hl7
    from hl7.mllp import start_hl7_server
except ImportError:
    sys.stderr.write("mllp_baseline: python3-hl7 is not installed "
                     "(apt-get install python3-hl7)\n")
    sys.exit(1)


def ack_for(msg, code):
    """AA, or CA when MSH-15 or MSH-16 is non-empty (enhanced mode)."""
    msh = msg.segment("MSH")
    enhanced = False
    for i in (15, 16):
        try:
            if str(msh(i)):
                enhanced = True
        except (IndexError, KeyError):
            pass
    if code is None:
        code = "CA" if enhanced else "AA"
    return msg.create_ack(code)


async def serve(args):
    async def on_client(reader, writer):
        try:
            while not writer.is_closing():
                block = await reader.readblock()
                if args.commit_ack:
                    writer.write(b"\x0b\x06\x1c\x0d")
                try:
                    msg = hl7.parse(block.decode("utf-8", "replace"))
                    ack = str(ack_for(msg, args.ack_code))
                except Exception:   # not HL7: a minimal AR, as receivers do
                    ack = "MSH|^~\\&|||||||ACK|0|P|2.4\rMSA|AR|"
                writer.writeblock(ack.rstrip("\r").encode("utf-8") + b"\r")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as e:      # a bad frame: drop the connection
            sys.stderr.write("mllp_baseline: %s\n" % e)
        finally:
            writer.close()

    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
        if args.ca:
            ctx.load_verify_locations(args.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    server = await start_hl7_server(on_client, args.host, args.port,
                                    ssl=ctx, backlog=1024,
                                    limit=args.max_bytes)
    sock = server.sockets[0].getsockname()
    print("listening %s:%d" % (sock[0], sock[1]), flush=True)
    stop = asyncio.get_running_loop().create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set_result, None)
    await stop
    server.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2576)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--ca", help="require client certificates signed by this CA")
    p.add_argument("--commit-ack", action="store_true",
                   help="send an MLLP release 2 commit ACK before each HL7 ACK")
    p.add_argument("--ack-code", help="answer every message with this code")
    p.add_argument("--max-bytes", type=int, default=16 << 20)
    args = p.parse_args()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

# An SMTP-like mail submission server and client with STARTTLS (Python
# 3.13): the session starts in the clear, the client pipelines EHLO and
# STARTTLS in one write, both sides upgrade the connection with
# start_tls, and over TLS the server lets a client in by its certificate
# (AUTH EXTERNAL: the commonName must be one it knows) before it takes a
# message, whose MAIL, RCPT and DATA the client pipelines too.
# Usage: python3.13 smtp_starttls.py server CERTDIR PORT
#        python3.13 smtp_starttls.py client CERTDIR PORT [WHO]
#        (CERTDIR as spec/tls/make_certs.sh makes it; WHO: the client
#        certificate's name there, client or other; none: no certificate)
import asyncio
import ssl
import sys

MODE, CERTS, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
WHO = sys.argv[4] if len(sys.argv) > 4 else "client"
ALLOWED = {"tapio client"}


def common_name(cert):
    for rdn in cert["subject"]:
        for key, value in rdn:
            if key == "commonName":
                return value


def server_context():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                         cafile=f"{CERTS}/ca.pem")
    context.load_cert_chain(f"{CERTS}/server.pem", f"{CERTS}/server.key")
    context.verify_mode = ssl.CERT_REQUIRED  # no certificate, no TLS
    return context


async def session(reader, writer):
    def reply(*lines):  # a multi-line reply is "250-...", then "250 ..."
        for i, text in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            print(f"> {text[:3]}{sep}{text[4:]}")
            writer.write(f"{text[:3]}{sep}{text[4:]}\r\n".encode())

    user = mail = None
    reply("220 mail.test ESMTP")
    while line := await reader.readline():
        command = line.decode().rstrip("\r\n")
        print(f"< {command}")
        verb = command.split(" ")[0].upper()
        tls = writer.get_extra_info("ssl_object") is not None
        if verb == "EHLO":
            reply("250 mail.test", "250 PIPELINING",
                  "250 AUTH EXTERNAL" if tls else "250 STARTTLS")
        elif verb == "STARTTLS" and not tls:
            reply("220 ready to start TLS")
            try:
                await writer.start_tls(server_context())
            except (ssl.SSLError, ConnectionError):
                print("* TLS handshake failed")  # the connection is gone
                return
        elif verb == "AUTH" and tls and not user:
            name = common_name(writer.get_extra_info("peercert"))
            if name in ALLOWED:
                user = name
                reply(f"235 {name} authenticated")
            else:
                reply(f"535 {name} is not allowed")
        elif verb in ("MAIL", "RCPT", "DATA") and not user:
            reply("530 authentication required")
        elif verb == "MAIL":
            mail = [command[10:]]
            reply("250 ok")
        elif verb == "RCPT" and mail:
            mail.append(command[8:])
            reply("250 ok")
        elif verb == "DATA" and mail and len(mail) > 1:
            reply("354 end with .")
            body = await reader.readuntil(b"\r\n.\r\n")
            print(f"* {user}: mail from {mail[0]} to {', '.join(mail[1:])}, "
                  f"{len(body) - 5} bytes")
            reply("250 queued")
            mail = None
        elif verb == "QUIT":
            reply("221 bye")
            break
        else:
            reply("503 bad sequence of commands")
    writer.close()
    await writer.wait_closed()


async def serve():
    server = await asyncio.start_server(session, "127.0.0.1", PORT)
    await server.serve_forever()


async def client():
    context = ssl.create_default_context(cafile=f"{CERTS}/ca.pem")
    if WHO != "none":
        context.load_cert_chain(f"{CERTS}/{WHO}.pem", f"{CERTS}/{WHO}.key")
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)

    def send(*commands):  # pipelined: one write
        for command in commands:
            print(f"> {command}")
        writer.write("".join(c + "\r\n" for c in commands).encode())

    async def replies(n):  # the last line of each of n replies
        codes = []
        while len(codes) < n:
            line = (await reader.readline()).decode().rstrip("\r\n")
            if not line:
                raise EOFError
            print(f"< {line}")
            if line[3:4] != "-":
                codes.append(line[:3])
        return codes

    await replies(1)
    send("EHLO client.test", "STARTTLS")
    if (await replies(2))[1] != "220":
        return
    await writer.start_tls(context, server_hostname="localhost")
    print(f"* TLS: {writer.get_extra_info('ssl_object').version()}")
    try:
        send("EHLO client.test")
        await replies(1)
        send("AUTH EXTERNAL")
        if await replies(1) == ["235"]:
            send("MAIL FROM:<ann@client.test>", "RCPT TO:<bob@mail.test>",
                 "DATA")
            if await replies(3) == ["250", "250", "354"]:
                send("Subject: hello", "", "Hello, Bob.", ".")
                await replies(1)
        send("QUIT")
        await replies(1)
    except (ssl.SSLError, EOFError, ConnectionResetError):
        # in TLS 1.3 a refused certificate shows here (an alert, the end,
        # or a reset: the server may close before it read all we sent)
        print("* the server ended the TLS session")
    writer.close()


asyncio.run(serve() if MODE == "server" else client())

# imgscope-test/leaky: secrets where users leave them by mistake (issue 14): on RUN lines (a
# .env written then deleted, a password in a command's environment), in an ENV and as a CMD
# argument.  tests/test_redaction.py checks that no command shows them; values are made up.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /app && echo 'SECRET_KEY=abc123' > /app/.env
RUN DB_PASSWORD=Xk9fQ2mZ7pL4wR8t sh -c 'echo migrated > /app/migrated'
RUN rm /app/.env
ENV API_TOKEN=Zq81xkW0pp9Lm
CMD ["app", "--password", "Xk9fQ2mZ7pL4wR8t"]

# imgscope-test/empty: steps that store nothing (a RUN whose diff is empty, metadata
# steps) between real layers, to check that steps and layers pair as `docker history` pairs them.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN true
ENV A=1
RUN mkdir /x && rm -r /x
EXPOSE 8080
RUN echo x > /x.txt
USER 1000

# imgscope-test/layers: every kind of layer change, built from busybox alone.
# Built with the legacy builder (DOCKER_BUILDKIT=0) from a context that holds
# only a static busybox; tests/daemon/images.py and .ci/run both build it.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV IMGSCOPE_TEST=layers
RUN mkdir -p /srv/app/conf /srv/app/empty/sub /var/log \
 && echo "line one" > /srv/app/conf/app.conf \
 && echo hello > /srv/app/greeting.txt \
 && dd if=/dev/urandom of=/srv/app/blob.bin bs=1024 count=64 2>/dev/null \
 && echo keep > /srv/app/keep.txt \
 && echo gone > /srv/app/gone.txt \
 && printf 'a\0b' > /srv/app/binary.dat
RUN echo "line two" >> /srv/app/conf/app.conf
RUN chmod 600 /srv/app/keep.txt
RUN rm /srv/app/gone.txt
LABEL org.example.imgscope=layers
RUN ln -s /srv/app/conf/app.conf /srv/app/current.conf \
 && ln -s greeting.txt /srv/app/hello-link \
 && ln /srv/app/keep.txt /srv/app/keep.hardlink
RUN touch /srv/app/greeting.txt
WORKDIR /srv/app
CMD ["sh"]

# throughput.gp: the chart of `scripts/dev bench` (build/bench/throughput.png).
#   gnuplot -e "httpdata='a.dat'; eventsdata='b.dat'; outfile='c.png'; havehttp=1; haveevents=1" throughput.gp
# Each data file has one line per bar: "name" value kind, where kind 1 is a baseline (grey) and
# 2 a cartshard scenario (blue). Left: HTTP requests per second; right: events per second. A
# panel whose file is empty (its scenarios did not run: have...=0) stays blank.

set terminal pngcairo noenhanced size 1400,560 font 'sans,10'
set output outfile
set multiplot layout 1,2 title 'cartshard benchmark: scenarios (blue) next to their baselines (grey)'

set style fill solid 0.85 noborder
set boxwidth 0.65
set grid ytics lc rgb '#dddddd'
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set xtics rotate by -30 nomirror
set linetype 1 lc rgb '#9a9a9a'
set linetype 2 lc rgb '#2f6db5'
unset key

set title 'requests per second (Redis GETs, events published, pgbench transactions)'
set ylabel 'requests/s'
if (havehttp) {
    plot httpdata using 0:2:3:xtic(1) with boxes lc variable, \
         '' using 0:2:(sprintf('%.0f', $2)) with labels offset 0,0.8 font 'sans,9'
} else {
    set multiplot next
}

set title 'events applied per second (COPY: events'' worth of rows)'
set ylabel 'events/s'
if (haveevents) {
    plot eventsdata using 0:2:3:xtic(1) with boxes lc variable, \
         '' using 0:2:(sprintf('%.0f', $2)) with labels offset 0,0.8 font 'sans,9'
}

unset multiplot

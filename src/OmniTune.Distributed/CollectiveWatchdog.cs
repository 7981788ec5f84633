using System.Diagnostics;

namespace OmniTune.Distributed;

/// <summary>
/// Ends the job when one communication call waits longer than the timeout (a peer died or hung), instead of letting every
/// rank hang. One background thread per process watches whichever call is in progress; <see cref="Watch"/> marks one.
/// </summary>
public sealed class CollectiveWatchdog : IDisposable
{
    readonly object gate = new();
    readonly Action<string> onTimeout;
    readonly Thread thread;
    volatile bool stopped;
    string? current;
    long startedAt;

    /// <summary>Watches calls for <paramref name="timeout"/>; <paramref name="onTimeout"/> receives the message and must end the process.</summary>
    public CollectiveWatchdog(TimeSpan timeout, Action<string> onTimeout)
    {
        if (timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), "the collective timeout must be positive");
        Timeout = timeout;
        this.onTimeout = onTimeout;
        thread = new Thread(Loop) { IsBackground = true, Name = "collective watchdog" };
        thread.Start();
    }

    /// <summary>How long one call may wait.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Marks <paramref name="what"/> (e.g. "rank 1 of group 'world': all-reduce of 4096 floats") as in progress until disposed.</summary>
    public Scope Watch(string what)
    {
        lock (gate)
        {
            current = what;
            startedAt = Stopwatch.GetTimestamp();
        }
        return new Scope(this);
    }

    void Done()
    {
        lock (gate) current = null;
    }

    void Loop()
    {
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(Timeout.TotalMilliseconds / 10, 10, 1000));
        while (!stopped)
        {
            Thread.Sleep(tick);
            string? late = null;
            lock (gate)
            {
                if (current is not null && Stopwatch.GetElapsedTime(startedAt) > Timeout) late = current;
            }
            if (late is null) continue;
            onTimeout($"{late} waited more than {Timeout.TotalSeconds:0.#} s for its peers: a rank has died or hung; ending the job " +
                "(raise --distributed-timeout-minutes if a step legitimately takes this long)");
            return;
        }
    }

    /// <inheritdoc/>
    public void Dispose() => stopped = true;

    /// <summary>One watched call; disposing it marks the call finished.</summary>
    public readonly struct Scope(CollectiveWatchdog owner) : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose() => owner.Done();
    }
}

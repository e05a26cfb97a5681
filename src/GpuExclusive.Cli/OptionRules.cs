using System.CommandLine;
using System.Globalization;
using System.Numerics;

namespace GpuExclusive.Cli;

/// <summary>
/// Checks shared by the commands' options. Each refusal is one line that names the option, in the style
/// "--x must be between A and B (got C)"; parse-time checks run before any command starts work.
/// </summary>
internal static class OptionRules
{
    /// <summary>A whole-number option must lie in <c>[min, max]</c>.</summary>
    /// <remarks>
    /// Compares the text of the token, not the converted value: a number too large for the option's type
    /// (--seed 2147483648) is out of range, where asking System.CommandLine for its value would throw.
    /// A token that is not a number at all is reported by System.CommandLine itself, naming the option.
    /// </remarks>
    public static void Range<T>(Option<T> option, long min, long max)
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count != 1 ||
                !BigInteger.TryParse(result.Tokens[0].Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out BigInteger number))
                return;
            if (number < min || number > max)
            {
                result.AddError(min == 1 && max == long.MaxValue
                    ? $"{option.Name} must be > 0 (got {number})"
                    : $"{option.Name} must be between {min} and {max} (got {number})");
            }
        });
    }

    /// <summary>A path option must name something: an empty or blank path is refused.</summary>
    public static void NonEmptyPath(Option<string?> option)
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count == 1 && string.IsNullOrWhiteSpace(result.Tokens[0].Value))
                result.AddError($"{option.Name} needs a path (got '{result.Tokens[0].Value}')");
        });
    }

    /// <summary>
    /// Fails unless <paramref name="path"/> can be written as a file, leaving no file behind that was not there
    /// before: an unwritable report is bad input before the run, not a lost report after it.
    /// </summary>
    public static void CheckWritableFile(string option, string path)
    {
        if (Directory.Exists(path))
            throw new UsageException($"cannot write {option} {path}: it is a folder");
        bool existed = File.Exists(path);
        try
        {
            using (new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
            {
            }

            if (!existed)
                File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UsageException($"cannot write {option} {path}: {e.Message}");
        }
    }

    /// <summary>Creates the folder <paramref name="path"/> (an output folder option), or fails naming the option.</summary>
    public static void CreateFolder(string option, string path)
    {
        try
        {
            Directory.CreateDirectory(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UsageException($"cannot create {option} {path}: {e.Message}");
        }
    }

    /// <summary>
    /// "--inject=", "--inject=maybe" and "--inject maybe": System.CommandLine reads the first as a bare --inject (true!)
    /// and leaves 'maybe' unmatched ("Unrecognized command or argument 'maybe'"). Returns a line naming the option, or
    /// null when <paramref name="args"/> has no such misuse.
    /// </summary>
    public static string? ValueMisuse(Command root, IReadOnlyList<string> args, IEnumerable<string> unmatched)
    {
        var options = AllOptions(root);
        var stray = unmatched.ToHashSet(StringComparer.Ordinal);
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            int equals = arg.IndexOf('=', StringComparison.Ordinal);
            Option? option;
            string value;
            if (arg.StartsWith('-') && equals > 0 && options.TryGetValue(arg[..equals], out option))
            {
                value = arg[(equals + 1)..];
                if (value.Length == 0)
                    return $"{option.Name} was given an empty value ('{arg}')";
            }
            else if (options.TryGetValue(arg, out option) && i + 1 < args.Count && stray.Contains(args[i + 1]))
            {
                value = args[i + 1];
            }
            else
            {
                continue;
            }

            if (option.Arity.MaximumNumberOfValues == 0)
                return $"{option.Name} takes no value (got '{value}')";
            if (option.ValueType == typeof(bool) && !bool.TryParse(value, out _))
                return $"{option.Name} must be true or false (got '{value}')";
        }

        return null;
    }

    private static Dictionary<string, Option> AllOptions(Command root)
    {
        var options = new Dictionary<string, Option>(StringComparer.Ordinal);
        void Add(Command command)
        {
            foreach (Option option in command.Options)
            {
                options.TryAdd(option.Name, option);
                foreach (string alias in option.Aliases)
                    options.TryAdd(alias, option);
            }

            foreach (Command sub in command.Subcommands)
                Add(sub);
        }

        Add(root);
        return options;
    }
}
